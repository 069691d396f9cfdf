package hostsync_test

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
	"github.com/siterecovery/siterecovery/hostsync"
	"github.com/siterecovery/siterecovery/hostsync/replica"
)

// A resync chunk lost on the way (the source does not keep chunks): the
// recovery host holds the later cycles behind the gap, and instead of
// sending them again for ever the source raises ResyncRequired; a new
// resync repairs the replica.
func TestResyncChunkLostRaisesResyncRequired(t *testing.T) {
	var armed atomic.Bool
	hit, release := make(chan struct{}), make(chan struct{})
	w := protectFailover(t, func(c *hostsync.AgentConfig) {
		if c.Host != "hv11" {
			return
		}
		c.ReplicaHook = func(_, stage string) error {
			if stage != replica.StageReserved || !armed.CompareAndSwap(true, false) {
				return nil
			}
			close(hit)
			<-release
			return errors.New("injected: the chunk is lost while it is applied")
		}
	})
	w.corruptReplica(5<<20 + 100)
	w.qemuAt("hv01", "write -P 0x33 5275648 4096")
	w.waitVM(15*time.Second, "resync required", func(vm events.VM) bool { return vm.State == events.ResyncRequiredState })

	armed.Store(true)
	w.cmd("sr.cmd.vm.resync", m{"vm": "web01"})
	select {
	case <-hit:
	case <-time.After(30 * time.Second):
		t.Fatal("the resync's first chunk never reached the replica")
	}
	stream, err := w.js().Stream(w.ctx, agentproto.DeltaStream("secondary"))
	require.NoError(t, err)
	require.NoError(t, stream.Purge(w.ctx, jetstream.WithPurgeSubject("sr.delta.secondary.*.web01.*")))
	close(release)

	w.waitVM(30*time.Second, "resync required again", func(vm events.VM) bool {
		if vm.State != events.ResyncRequiredState {
			return false
		}
		recs, err := w.log.Load(w.ctx, events.VMAgg("web01"))
		require.NoError(t, err)
		for _, r := range recs {
			if e, ok := r.Data.(events.ResyncRequiredData); ok && strings.Contains(e.Reason, "lost on the way") {
				return true
			}
		}
		return false
	})
	w.resyncRepairs()
}
