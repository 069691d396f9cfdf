package handlers

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

func dur(d time.Duration) *events.Duration { v := events.Duration(d); return &v }

func TestValidatePolicy(t *testing.T) {
	cases := []struct {
		name string
		r    policyRequest
		ok   bool
	}{
		{"classic", policyRequest{CopyFrequency: dur(30 * time.Second), Retention: dur(24 * time.Hour), AppConsistentEvery: dur(4 * time.Hour)}, true},
		{"defaults", policyRequest{}, true},
		{"1s", policyRequest{CopyFrequency: dur(time.Second)}, true},
		{"below 1s", policyRequest{CopyFrequency: dur(500 * time.Millisecond)}, false},
		{"retention 0", policyRequest{Retention: dur(0)}, true},
		{"retention 720h", policyRequest{Retention: dur(720 * time.Hour)}, true},
		{"retention above", policyRequest{Retention: dur(721 * time.Hour)}, false},
		{"retention negative", policyRequest{Retention: dur(-time.Hour)}, false},
		{"app-consistent = retention", policyRequest{Retention: dur(4 * time.Hour), AppConsistentEvery: dur(4 * time.Hour)}, false},
		{"app-consistent with no retention", policyRequest{Retention: dur(0), AppConsistentEvery: dur(time.Hour)}, false},
		{"rpo negative", policyRequest{RPOThreshold: dur(-time.Second)}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.r.Name = "p"
			evs, err := decidePolicyCreate(events.Policy{}, c.r)
			if c.ok {
				require.NoError(t, err)
				require.Len(t, evs, 1)
				return
			}
			require.ErrorIs(t, err, events.ErrInvalidArgument)
		})
	}
}

func TestDecidePolicyUpdateMerges(t *testing.T) {
	p := events.Policy{Name: "p30", Settings: events.PolicySettings{CopyFrequency: events.Duration(30 * time.Second), Retention: events.Duration(24 * time.Hour)}, Version: 1}
	yes := true
	evs, err := decidePolicyUpdate(p, policyRequest{Name: "p30", Compression: &yes})
	require.NoError(t, err)
	got := evs[0].(events.PolicyUpdatedData)
	require.True(t, got.Compression)
	require.Equal(t, 30*time.Second, got.CopyFrequency.D())
	_, err = decidePolicyUpdate(events.Policy{}, policyRequest{Name: "x"})
	require.ErrorIs(t, err, events.ErrNotFound)
	_, err = decidePolicyDelete(policyDeleteState{Policy: p, Pairings: []string{"gold-gold-dr"}}, "p30")
	require.ErrorIs(t, err, events.ErrInvalidState)
}

func TestDecideFabricExistence(t *testing.T) {
	site := events.Site{Name: "primary", Version: 1}
	_, err := decideSiteRegister(site, "primary")
	require.ErrorIs(t, err, events.ErrAlreadyExists)
	_, err = decideSiteUnregister(siteUnregisterState{Site: site, Hosts: []string{"hv01"}}, "primary")
	require.ErrorIs(t, err, events.ErrInvalidState)
	_, err = decideSiteUnregister(siteUnregisterState{}, "nope")
	require.ErrorIs(t, err, events.ErrNotFound)
	_, err = decideHostRegister(hostRegisterState{}, hostRequest{Name: "hv01", Site: "nope"})
	require.ErrorIs(t, err, events.ErrNotFound)

	host := hostState{Host: events.Host{Name: "hv01", Site: "primary", Version: 1}}
	_, err = decideVMCreate(vmCreateState{Host: host}, vmCreate{Name: "web01", Host: "hv01"})
	require.ErrorIs(t, err, events.ErrInvalidArgument)
	require.Contains(t, err.Error(), "in no cloud")
	host.Cloud = "gold"
	evs, err := decideVMCreate(vmCreateState{Host: host, Cloud: cloudState{Cloud: events.Cloud{Name: "gold", Version: 2}}}, vmCreate{Name: "web01", Host: "hv01"})
	require.NoError(t, err)
	require.Equal(t, "gold", evs[0].(events.VMCreatedData).Cloud)
	require.Equal(t, "primary", evs[0].(events.VMCreatedData).Site)
}
