package agentproto_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
)

func TestSubjects(t *testing.T) {
	require.Equal(t, "sr.cmd.agent.hv01.recovery_point", agentproto.ReportSubject("hv01", agentproto.VerbRecoveryPoint))
	require.Equal(t, "sr.cmd.agent.*.heartbeat", agentproto.ReportFilter(agentproto.VerbHeartbeat))
	require.Equal(t, "sr.agent.hv01.verify.web01", agentproto.VerifySubject("hv01", "web01"))
	require.Equal(t, "sr.agent.hv02.leaves.web01", agentproto.LeavesSubject("hv02", "web01"))
	require.Equal(t, "sr.delta.dr.hv01.web01.3", agentproto.DeltaSubject("dr", "hv01", "web01", 3))
	require.Equal(t, "SR_DELTA_dr", agentproto.DeltaStream("dr"))
	require.Equal(t, "sr.delta.dr.>", agentproto.DeltaStreamSubjects("dr"))
	require.Equal(t, "sr.delta.dr.*.web01.*", agentproto.DeltaFilter("dr", "web01"))
	require.Equal(t, "sr-apply-web01", agentproto.DeltaConsumer("web01"))
	require.Equal(t, "sr.ack.hv01.web01", agentproto.AckSubject("hv01", "web01"))
}

func TestParseReportSubject(t *testing.T) {
	host, verb, err := agentproto.ParseReportSubject(agentproto.ReportSubject("hv01", agentproto.VerbRecoveryPoint))
	require.NoError(t, err)
	require.Equal(t, "hv01", host)
	require.Equal(t, "recovery_point", verb)
	for _, bad := range []string{"sr.cmd.vm.enable", "sr.cmd.agent.hv01", "sr.cmd.agentx.hv01.error"} {
		_, _, err = agentproto.ParseReportSubject(bad)
		require.ErrorIs(t, err, agentproto.ErrNotReportSubject, bad)
		require.ErrorIs(t, err, events.ErrInvalidArgument, bad)
	}
	_, _, err = agentproto.ParseReportSubject("sr.cmd.agent.a b.error")
	require.ErrorIs(t, err, events.ErrInvalidToken)
}

func TestVerbsAreDistinctTokens(t *testing.T) {
	seen := map[string]bool{}
	for _, v := range append(append([]string{}, agentproto.ReplicationVerbs...), agentproto.FailoverVerbs...) {
		require.NoError(t, events.ValidateToken("verb", v))
		require.False(t, seen[v], "verb %s twice", v)
		seen[v] = true
	}
	require.Len(t, seen, 15)
}
