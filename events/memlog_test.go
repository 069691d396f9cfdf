package events_test

import (
	"testing"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/logtest"
)

func TestMemLogConformance(t *testing.T) {
	logtest.Run(t, func(t *testing.T) events.Log {
		l := events.NewMemLog()
		t.Cleanup(func() { l.Close() })
		return l
	})
}
