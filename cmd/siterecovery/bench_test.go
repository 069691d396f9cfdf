package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBenchUsage(t *testing.T) {
	for _, args := range [][]string{{"extra"}, {"--only", "nope"}, {"--quick", "--smoke"}, {"--bogus"}} {
		var stdout, stderr bytes.Buffer
		require.Equal(t, 2, runBench(context.Background(), args, &stdout, &stderr), "args %v", args)
		require.NotEmpty(t, stderr.String(), "args %v", args)
	}
}
