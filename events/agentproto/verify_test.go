package agentproto_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
)

func TestVerifyWait(t *testing.T) {
	every := func(d time.Duration) events.PolicySettings {
		return events.PolicySettings{CopyFrequency: events.Duration(d)}
	}
	cases := []struct {
		s      events.PolicySettings
		waitMS int64
		want   time.Duration
	}{
		{every(30 * time.Second), 0, 70 * time.Second},                 // two copy intervals + 10 s
		{every(time.Second), 0, 12 * time.Second},                      // the shortest policy
		{every(0), 0, 70 * time.Second},                                // settings with no copy frequency: 30 s
		{every(5 * time.Minute), 0, agentproto.MaxVerifyWait},          // capped
		{every(30 * time.Second), 1500, 1500 * time.Millisecond},       // asked for
		{every(30 * time.Second), -1, 70 * time.Second},                // not asked for
		{every(30 * time.Second), 3_600_000, agentproto.MaxVerifyWait}, // capped
	}
	for _, c := range cases {
		require.Equal(t, c.want, agentproto.VerifyWait(c.s, c.waitMS), "%s, wait_ms %d", c.s.CopyFrequency.D(), c.waitMS)
	}
}
