package handlers

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

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
