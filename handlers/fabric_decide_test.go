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

func cloudOf(name, site string) cloudClaim {
	return cloudClaim{Cloud: cloudState{Cloud: events.Cloud{Name: name, Site: site, Version: 1}}}
}

func TestDecidePairingCreate(t *testing.T) {
	policy := events.Policy{Name: "p30", Version: 1}
	r := pairingRequest{Name: "gold-gold-dr", Source: "gold", Target: "gold-dr", Policy: "p30"}
	ok := pairingCreateState{Source: cloudOf("gold", "primary"), Target: cloudOf("gold-dr", "secondary"), Policy: policy}
	evs, err := decidePairingCreate(ok, r)
	require.NoError(t, err)
	require.Equal(t, events.PairingCreatedData{Name: r.Name, SourceCloud: "gold", TargetCloud: "gold-dr", Policy: "p30"}, evs[0])

	sameSite := ok
	sameSite.Target = cloudOf("gold-dr", "primary")
	_, err = decidePairingCreate(sameSite, r)
	require.ErrorIs(t, err, events.ErrInvalidArgument)

	held := ok
	held.Target.HeldBy = "other"
	_, err = decidePairingCreate(held, r)
	require.ErrorIs(t, err, events.ErrInvalidState)
	require.Contains(t, err.Error(), "already in pairing other")

	missing := ok
	missing.Policy = events.Policy{}
	_, err = decidePairingCreate(missing, r)
	require.ErrorIs(t, err, events.ErrNotFound)

	self := r
	self.Target = "gold"
	_, err = decidePairingCreate(ok, self)
	require.ErrorIs(t, err, events.ErrInvalidArgument)

	_, err = decidePairingDelete(pairingDeleteState{Pairing: events.Pairing{Name: "x", Version: 1}, VMs: []string{"web01"}}, "x")
	require.ErrorIs(t, err, events.ErrInvalidState)
}

func TestDecideClaims(t *testing.T) {
	h := hostState{Host: events.Host{Name: "hv01", Site: "primary", Version: 1}}
	evs, err := decideHostAssign(h, "hv01", "gold", "primary")
	require.NoError(t, err)
	require.Equal(t, events.HostAssignedData{Host: "hv01", Cloud: "gold"}, evs[0])
	_, err = decideHostAssign(h, "hv01", "gold", "secondary")
	require.ErrorIs(t, err, events.ErrInvalidArgument)
	h.Cloud = "gold"
	evs, err = decideHostAssign(h, "hv01", "gold", "primary")
	require.NoError(t, err)
	require.Empty(t, evs, "already the cloud's: nothing")
	_, err = decideHostAssign(h, "hv01", "silver", "primary")
	require.ErrorIs(t, err, events.ErrInvalidState)
	_, err = decideHostAssign(hostState{}, "hv09", "gold", "primary")
	require.ErrorIs(t, err, events.ErrNotFound)

	c := cloudOf("gold", "primary")
	c.Cloud.Pairing = "p1"
	evs, err = decideCloudClaim(c, "gold", "p1", events.PairingRoleSource)
	require.NoError(t, err)
	require.Empty(t, evs)
	evs, err = decideCloudRelease(c.Cloud, "gold", "p1")
	require.NoError(t, err)
	require.Equal(t, events.CloudUnpairedData{Cloud: "gold", Pairing: "p1"}, evs[0])
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

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"4GiB": 4 << 30, "512MiB": 512 << 20, "10G": 10 << 30, "1048576": 1 << 20, "1024KB": 1024000} {
		got, err := ParseSize(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "-1G", "lots", "0", "3GB5", "1KB"} {
		_, err := ParseSize(bad)
		require.ErrorIs(t, err, events.ErrInvalidArgument, bad)
	}
}
