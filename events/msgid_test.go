package events_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

func TestMsgIndexReadsBackMsgID(t *testing.T) {
	for i := range 3 {
		require.Equal(t, i, events.MsgIndex(events.MsgID("cmd-1", events.VMAgg("web01"), i)))
	}
	for _, id := range []string{"", "no-colon", "a:b:c:x", "a:b:c:-1"} {
		require.Zero(t, events.MsgIndex(id), "%q carries no index", id)
	}
}
