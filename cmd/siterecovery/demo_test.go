package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDemo runs `siterecovery demo` as make demo does and requires its own
// verification to pass.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo runs the whole system for about a minute")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	code := runDemo(ctx, []string{"--data", t.TempDir()}, &out, &errb)
	require.Equal(t, 0, code, "demo output:\n%s\n%s", out.String(), errb.String())
	require.Contains(t, out.String(), "demo verified")
	require.GreaterOrEqual(t, strings.Count(out.String(), "verified: "), 4, out.String())
}
