package handlers

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

func TestDecideVerification(t *testing.T) {
	bad := []events.DiskRange{{Disk: "d0", Offset: 5 << 20, Length: 64 << 10}}
	for _, tc := range []struct {
		name   string
		state  events.ProtectionState
		health string
		diff   []events.DiskRange
		want   []events.Type
	}{
		{"equal", events.Protected, events.HealthNormal, nil, []events.Type{events.VerificationCompleted}},
		{"differs while protected", events.Protected, events.HealthNormal, bad,
			[]events.Type{events.VerificationCompleted, events.ResyncRequired, events.HealthChanged}},
		{"differs, already critical", events.Protected, events.HealthCritical, bad,
			[]events.Type{events.VerificationCompleted, events.ResyncRequired}},
		{"differs while paused: no resync raised", events.Paused, events.HealthNormal, bad,
			[]events.Type{events.VerificationCompleted, events.HealthChanged}},
	} {
		vm := events.VM{Name: "web01", State: tc.state, Health: tc.health, SourceHost: "hv01", RecoveryHost: "hv11"}
		evs := DecideVerification(vm, "rp-1-7", 1, 7, tc.diff)
		var got []events.Type
		for _, e := range evs {
			got = append(got, e.EventType())
		}
		require.Equal(t, tc.want, got, tc.name)
		vc := evs[0].(events.VerificationCompletedData)
		require.Equal(t, len(tc.diff) == 0, vc.Equal, tc.name)
		require.Equal(t, "hv01", vc.SourceHost)
		require.Equal(t, "rp-1-7", vc.Point)
	}
}
