package events_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

func TestCopyInterval(t *testing.T) {
	for freq, want := range map[time.Duration]time.Duration{
		0:                           30 * time.Second, // settings with none
		500 * time.Millisecond:      30 * time.Second,
		events.MinCopyFrequency:     time.Second,
		45 * time.Second:            45 * time.Second,
		events.DefaultCopyFrequency: 5 * time.Minute,
	} {
		s := events.PolicySettings{CopyFrequency: events.Duration(freq)}
		require.Equal(t, want, s.CopyInterval(), "copy frequency %s", freq)
	}
}
