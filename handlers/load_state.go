package handlers

import "github.com/siterecovery/siterecovery/events"

// The states decide works on: the events folds, plus the claims that
// events.Host and events.Cloud do not fold (host_assigned, cloud_paired).

// hostState is a host and the cloud it belongs to.
type hostState struct {
	events.Host
	// Cloud is the cloud the host was assigned to ("" for none).
	Cloud string
}

func (h *hostState) apply(r events.Record) {
	h.Host.Apply(r)
	switch d := r.Data.(type) {
	case events.HostRegisteredData:
		h.Cloud = ""
	case events.HostAssignedData:
		h.Cloud = d.Cloud
	case events.HostUnassignedData:
		if h.Cloud == d.Cloud {
			h.Cloud = ""
		}
	}
}

func foldHost(recs []events.Record) hostState {
	var h hostState
	for _, r := range recs {
		h.apply(r)
	}
	return h
}

// cloudState is a cloud and the pairing that claimed it.
type cloudState struct {
	events.Cloud
	// Pairing claimed the cloud as Role ("" for none). The claim holds
	// unless that pairing was deleted.
	Pairing string
	Role    string
}

func (c *cloudState) apply(r events.Record) {
	c.Cloud.Apply(r)
	switch d := r.Data.(type) {
	case events.CloudPairedData:
		c.Pairing, c.Role = d.Pairing, d.Role
	case events.CloudUnpairedData:
		if c.Pairing == d.Pairing {
			c.Pairing, c.Role = "", ""
		}
	}
}

func foldCloud(recs []events.Record) cloudState {
	var c cloudState
	for _, r := range recs {
		c.apply(r)
	}
	return c
}

func foldSite(recs []events.Record) events.Site {
	var s events.Site
	for _, r := range recs {
		s.Apply(r)
	}
	return s
}

func foldPolicy(recs []events.Record) events.Policy {
	var p events.Policy
	for _, r := range recs {
		p.Apply(r)
	}
	return p
}

func foldPairing(recs []events.Record) events.Pairing {
	var p events.Pairing
	for _, r := range recs {
		p.Apply(r)
	}
	return p
}

func foldNetmap(recs []events.Record) events.Netmap {
	var n events.Netmap
	for _, r := range recs {
		n.Apply(r)
	}
	return n
}

func foldPlan(recs []events.Record) events.Plan {
	var p events.Plan
	for _, r := range recs {
		p.Apply(r)
	}
	return p
}

// lastSeq is the version of an aggregate loaded as recs.
func lastSeq(recs []events.Record) uint64 {
	if len(recs) == 0 {
		return 0
	}
	return recs[len(recs)-1].Seq
}
