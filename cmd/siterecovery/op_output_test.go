package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// status prints each host's reachability and its last heartbeat with how
// long ago it was; a host not heard yet is unknown with none.
func TestPrintStatusShowsReachabilityAndLastHeartbeat(t *testing.T) {
	seen := time.Now().Add(-3 * time.Second).UTC()
	parts := map[string]json.RawMessage{
		"status": json.RawMessage(`{"sites":1,"hosts":{"total":2,"reachable":1,"unknown":1,"unreachable":0},"vms":{"total":0},"jobs":{}}`),
		"sites":  json.RawMessage(`[{"name":"primary","hosts":["hv01","hv02"],"clouds":[]}]`),
		"hosts": json.RawMessage(fmt.Sprintf(`[{"name":"hv01","site":"primary","reachability":"reachable","reachable":true,"last_seen":%q,"clouds":[],"vms":[]},
			{"name":"hv02","site":"primary","reachability":"unknown","reachable":false,"last_seen":null,"clouds":[],"vms":[]}]`, seen.Format(time.RFC3339Nano))),
		"vms": json.RawMessage(`[]`),
	}
	var out bytes.Buffer
	require.NoError(t, printStatus(&out, parts))
	require.Contains(t, out.String(), "hosts: 2 (1 reachable, 1 unknown, 0 unreachable)")
	var hv01, hv02 string
	for _, line := range strings.Split(out.String(), "\n") {
		switch {
		case strings.HasPrefix(line, "hv01 "):
			hv01 = line
		case strings.HasPrefix(line, "hv02 "):
			hv02 = line
		}
	}
	require.Regexp(t, `^hv01\s+primary\s+reachable\s+`+seen.Format(time.RFC3339)+` \([34]s ago\)\s`, hv01)
	require.Regexp(t, `^hv02\s+primary\s+unknown\s+-\s`, hv02)
}
