package main

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/hostsync"
)

// ensureDeltaStreams follows the log and creates the delta stream
// SR_DELTA_<site> of every registered site, so that a site's stream exists
// before any agent ships to it (agents with per-host permissions cannot
// create streams). It runs until ctx ends; errors are retried.
func (cp *controlPlane) ensureDeltaStreams(ctx context.Context) {
	js, err := jetstream.New(cp.nc)
	if err != nil {
		cp.logger.Error().Err(err).Msg("delta streams: no JetStream context")
		return
	}
	done := map[string]bool{}
	next := uint64(1)
	for ctx.Err() == nil {
		next, err = cp.ensureDeltaStreamsFrom(ctx, js, next, done)
		if err != nil && ctx.Err() == nil {
			cp.logger.Warn().Err(err).Msg("delta streams: following the log, will retry")
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// ensureDeltaStreamsFrom follows the log from next until an error and
// returns where to continue.
func (cp *controlPlane) ensureDeltaStreamsFrom(ctx context.Context, js jetstream.JetStream, next uint64, done map[string]bool) (uint64, error) {
	cur, err := cp.log.Follow(ctx, next)
	if err != nil {
		return next, err
	}
	defer cur.Close()
	for {
		recs, err := cur.Next(ctx, 512)
		if err != nil {
			// An undecodable record stops here and is retried, loudly:
			// the projections report it in status too.
			return next, err
		}
		for _, r := range recs {
			next = r.Seq + 1
			d, ok := r.Data.(events.SiteRegisteredData)
			if !ok || done[d.Name] {
				continue
			}
			if err := hostsync.EnsureDeltaStream(ctx, js, d.Name); err != nil {
				return r.Seq, err
			}
			done[d.Name] = true
			cp.logger.Info().Str("stream", hostsync.DeltaStream(d.Name)).Msg("delta stream ready")
		}
	}
}
