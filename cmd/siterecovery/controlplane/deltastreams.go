package controlplane

import (
	"context"
	"encoding/json"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/siterecovery/siterecovery/hostsync"
	"github.com/siterecovery/siterecovery/hostsync/natsbus"
)

// The control plane creates the delta stream of every registered site, R1,
// placed on the servers tagged site:<site> when the cluster has them (it
// tries the placement and falls back to none when no server can take it):
// with --tls-dir hosts may not create streams (a stream's republish or
// sources would let a host write any subject, sr.evt.> included). Without
// it the agents may still create them too (natsbus.EnsureDeltaStream).

// deltaStreamPoll is how often the control plane looks for new sites.
const deltaStreamPoll = 500 * time.Millisecond

// keepDeltaStreams starts the loop that creates the delta stream of each
// registered site; cp.stop ends it and Close waits for it.
func (cp *ControlPlane) keepDeltaStreams() error {
	js, err := natsjs.New(cp.nc)
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(context.Background())
	prev := cp.stop
	cp.stop = func() {
		stop()
		if prev != nil {
			prev()
		}
	}
	cp.wg.Add(1)
	go func() {
		defer cp.wg.Done()
		made := map[string]bool{}
		t := time.NewTicker(deltaStreamPoll)
		defer t.Stop()
		for {
			cp.ensureDeltaStreams(ctx, js, made)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return nil
}

// ensureDeltaStreams creates the delta streams of the sites not in made.
func (cp *ControlPlane) ensureDeltaStreams(ctx context.Context, js natsjs.JetStream, made map[string]bool) {
	for _, site := range cp.registeredSites(ctx) {
		if made[site] {
			continue
		}
		placed, err := natsbus.EnsureSiteDeltaStream(ctx, js, site)
		if err != nil {
			if ctx.Err() == nil {
				cp.logger.Warn().Err(err).Str("site", site).Msg("create the delta stream of a site")
			}
			continue
		}
		if !placed && js.Conn().ConnectedClusterName() != "" {
			cp.logger.Warn().Str("site", site).Str("tag", hostsync.SiteTag(site)).
				Msg("the site's delta stream is not placed at the site: no server of the cluster carries its tag")
		}
		made[site] = true
	}
}

// registeredSites names every registered site, from the read model.
func (cp *ControlPlane) registeredSites(ctx context.Context) []string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := cp.store.Query(ctx, "sites", nil)
	if err != nil {
		if ctx.Err() == nil {
			cp.logger.Warn().Err(err).Msg("list sites for their delta streams")
		}
		return nil
	}
	raw, err := json.Marshal(res)
	if err != nil {
		return nil
	}
	var sites []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(raw, &sites); err != nil {
		cp.logger.Warn().Err(err).Msg("sites query shape")
		return nil
	}
	names := make([]string, len(sites))
	for i, s := range sites {
		names[i] = s.Name
	}
	return names
}
