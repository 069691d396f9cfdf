package pki

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRolesAllowed reads the rules the server is given as the server does:
// a deny wins over an allow.
func TestRolesAllowed(t *testing.T) {
	for _, c := range []struct {
		publish bool
		subject string
		want    []string
	}{
		{true, "sr.cmd.site.register", []string{RoleOperator}},
		{true, "sr.cmd.agent.hv01.heartbeat", []string{RoleHost}},
		{true, "sr.q.status", []string{RoleOperator, RoleViewer}},
		{true, "sr.evt.vm.web01.failover_started", nil},
		{true, "$JS.API.STREAM.NAMES", []string{RoleOperator, RoleViewer, RoleHost}},
		{true, "$JS.API.CONSUMER.MSG.NEXT.SR_EVENTS.abc", []string{RoleOperator, RoleViewer, RoleHost}},
		{true, "$JS.API.CONSUMER.MSG.NEXT.SR_EVENTS.sr-automation", nil},
		{true, "$JS.ACK.SR_EVENTS.sr-automation.1.1.1.1.0", nil},
		{true, "$JS.API.CONSUMER.CREATE.SR_DELTA_dr.peek.>", []string{RoleHost}},
		{false, "sr.evt.>", []string{RoleOperator, RoleViewer}},
		{false, "sr.delta.>", nil},
	} {
		require.Equal(t, c.want, RolesAllowed(c.publish, c.subject), "publish %v %s", c.publish, c.subject)
	}
}
