package agentproto_test

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
)

// TestWireFieldNames holds every message to its JSON field names, the
// contract between agents and the control plane (and, for a divergence,
// the agent's failover state file): each message is filled in whole and
// its keys compared with the names the other side reads.
func TestWireFieldNames(t *testing.T) {
	head := agentproto.ReportHead{CommandID: "c", VM: "web01", Job: "j", Epoch: 2}
	disks := []agentproto.ReadyDisk{{Disk: "d0", Image: "/i", NBDURL: "nbd://x"}}
	roots := map[string]string{"d0": "ab"}
	at := time.Unix(1, 0).UTC()
	cases := []struct {
		msg  any
		keys string
	}{
		{agentproto.HeartbeatReport{Agent: "a", Time: at}, "agent time"},
		{agentproto.DiskProvisionedReport{CommandID: "c", VM: "v", Disk: "d", Role: "r", Image: "i", NBDURL: "n", Epoch: 1},
			"command_id disk epoch image nbd_url role vm"},
		{agentproto.IRProgressReport{CommandID: "c", VM: "v", DoneBytes: 1, TotalBytes: 2}, "command_id done_bytes total_bytes vm"},
		{agentproto.IRCompletedReport{CommandID: "c", VM: "v", SentBytes: 1}, "command_id sent_bytes vm"},
		{agentproto.RecoveryPointReport{CommandID: "c", VM: "v", ID: "p", Time: at, AppConsistent: true, Cycle: 1, Epoch: 1, Roots: roots, Bytes: 1},
			"app_consistent bytes command_id cycle epoch id roots time vm"},
		{agentproto.PointsPrunedReport{CommandID: "c", VM: "v", IDs: []string{"p"}}, "command_id ids vm"},
		{agentproto.ErrorReport{CommandID: "c", VM: "v", Code: agentproto.CodeBadBatch, Message: "m"}, "code command_id message vm"},
		{agentproto.DisabledReport{CommandID: "c", VM: "v", ReplicaDeleted: true}, "command_id replica_deleted vm"},
		{agentproto.VMStoppedReport{ReportHead: head, FinalCycle: 3, Roots: roots}, "command_id epoch final_cycle job roots vm"},
		{agentproto.FailoverReadyReport{ReportHead: head, RecoveryPoint: "p", Disks: disks}, "command_id disks epoch job recovery_point vm"},
		{agentproto.TestFailoverReadyReport{ReportHead: head, Disks: disks}, "command_id disks epoch job vm"},
		{agentproto.TestCleanupDoneReport{ReportHead: head}, "command_id epoch job vm"},
		{agentproto.ResyncProgressReport{ReportHead: head, DoneBytes: 1, TotalBytes: 2, SentBytes: 1}, "command_id done_bytes epoch job sent_bytes total_bytes vm"},
		{agentproto.ResyncCompletedReport{ReportHead: head, SentBytes: 1}, "command_id epoch job sent_bytes vm"},
		{agentproto.DivergenceReport{ReportHead: head, Blocks: 1, AsideImages: roots}, "aside_images blocks command_id epoch job vm"},
		{disks[0], "disk image nbd_url"},
		{agentproto.Reply{Seqs: []uint64{1}, Error: &agentproto.Error{Code: "c", Message: "m"}}, "error seqs"},
		{agentproto.Error{Code: "c", Message: "m"}, "code message"},
		{agentproto.VerifyRequest{WaitMS: 1}, "wait_ms"},
		{agentproto.VerifyReply{VM: "v", Epoch: 1, Cycle: 1, Point: "p", Equal: true, Differing: []events.DiskRange{}, Error: &agentproto.Error{}},
			"cycle differing epoch equal error point vm"},
	}
	for _, c := range cases {
		raw, err := json.Marshal(c.msg)
		require.NoError(t, err)
		var m map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(raw, &m))
		keys := slices.Sorted(maps.Keys(m))
		require.Equal(t, c.keys, strings.Join(keys, " "), "%T", c.msg)
	}
}

// TestWireOptionalFields: what a sender leaves out when it is zero.
func TestWireOptionalFields(t *testing.T) {
	cases := []struct {
		msg  any
		want string
	}{
		{agentproto.HeartbeatReport{}, `{"time":"0001-01-01T00:00:00Z"}`},
		{agentproto.VMStoppedReport{}, `{"vm":"","epoch":0}`},
		{agentproto.TestCleanupDoneReport{}, `{"vm":"","epoch":0}`},
		{agentproto.Reply{}, `{}`},
		{agentproto.VerifyRequest{}, `{}`},
	}
	for _, c := range cases {
		raw, err := json.Marshal(c.msg)
		require.NoError(t, err)
		require.JSONEq(t, c.want, string(raw), "%T", c.msg)
	}
}
