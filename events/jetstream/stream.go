package jetstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/siterecovery/siterecovery/events"
)

// DefaultStream is the name of the event stream (docs/reference/subjects.md).
const DefaultStream = "SR_EVENTS"

// DuplicateWindow is the stream's deduplication window: within it the server
// itself drops a retried event by its Nats-Msg-Id.
const DuplicateWindow = 2 * time.Minute

// subjects is what the event stream captures.
var subjects = []string{events.SubjectPrefix + ".>"}

// streamConfig is the event stream as docs/reference/subjects.md fixes it.
func streamConfig(name string, replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:               name,
		Description:        "siterecovery event log: one message per event, never deleted",
		Subjects:           subjects,
		Retention:          jetstream.LimitsPolicy,
		Storage:            jetstream.FileStorage,
		Discard:            jetstream.DiscardNew,
		MaxBytes:           -1,
		MaxMsgs:            -1,
		MaxMsgsPerSubject:  -1,
		MaxMsgSize:         -1,
		DenyDelete:         true,
		DenyPurge:          true,
		AllowDirect:        true,
		AllowAtomicPublish: true,
		Duplicates:         DuplicateWindow,
		Replicas:           replicas,
	}
}

// autoReplicas is 3 when the connection sees a JetStream cluster of at least
// three servers, else 1. It relies on the servers advertising their client
// URLs; set Config.Replicas where they do not.
func autoReplicas(nc *nats.Conn) int {
	if nc.ConnectedClusterName() != "" && len(nc.Servers()) >= 3 {
		return 3
	}
	return 1
}

// ensureStream creates the stream, or checks that the existing one is at
// least as strong as want. It never changes an existing stream. It returns
// the stream's configuration.
func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) (jetstream.StreamConfig, error) {
	s, err := lookupStream(ctx, js, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, want)
		if err == nil {
			return s.CachedInfo().Config, waitStreamLeader(ctx, js, want)
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return jetstream.StreamConfig{}, fmt.Errorf("create stream %s: %w", want.Name, err)
		}
		s, err = js.Stream(ctx, want.Name) // created meanwhile by another process
	}
	if err != nil {
		return jetstream.StreamConfig{}, fmt.Errorf("stream %s: %w", want.Name, err)
	}
	got := s.CachedInfo().Config
	if problems := weaknesses(got, want); len(problems) > 0 {
		return jetstream.StreamConfig{}, &StreamConfigError{Stream: want.Name, Problems: problems}
	}
	return got, waitStreamLeader(ctx, js, got)
}

// waitStreamLeader waits until a replicated stream has a leader, so that
// the first append after Open does not find the stream leaderless.
func waitStreamLeader(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	for cfg.Replicas > 1 {
		s, err := lookupStream(ctx, js, cfg.Name)
		if err != nil {
			return fmt.Errorf("stream %s: %w", cfg.Name, err)
		}
		if c := s.CachedInfo().Cluster; c != nil && c.Leader != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stream %s has no leader: %w", cfg.Name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// lookupStream gets the stream's info, asking again when a request goes
// unanswered (as can happen right after a cluster elects its meta leader)
// until ctx is done.
func lookupStream(ctx context.Context, js jetstream.JetStream, name string) (jetstream.Stream, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, apiAttemptTimeout)
		s, err := js.Stream(actx, name)
		cancel()
		if err == nil || !errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return s, err
		}
	}
}

// apiAttemptTimeout bounds one attempt of a JetStream API request that is
// retried.
const apiAttemptTimeout = 2 * time.Second

// weaknesses lists how got is weaker than want.
func weaknesses(got, want jetstream.StreamConfig) []string {
	var p []string
	add := func(bad bool, format string, args ...any) {
		if bad {
			p = append(p, fmt.Sprintf(format, args...))
		}
	}
	for _, s := range want.Subjects {
		add(!slices.Contains(got.Subjects, s), "subjects %v do not include %s", got.Subjects, s)
	}
	add(got.Mirror != nil, "is a mirror (not writable)")
	add(got.Sealed, "is sealed")
	add(got.Retention != jetstream.LimitsPolicy, "retention %s removes events (want limits)", got.Retention)
	add(got.Storage != jetstream.FileStorage, "storage %s (want file)", got.Storage)
	add(got.Discard != jetstream.DiscardNew, "discard %s silently drops events (want new)", got.Discard)
	add(got.MaxBytes > 0, "max bytes %d (want unlimited)", got.MaxBytes)
	add(got.MaxMsgs > 0, "max messages %d (want unlimited)", got.MaxMsgs)
	add(got.MaxAge > 0, "max age %s (want unlimited)", got.MaxAge)
	add(got.MaxMsgsPerSubject > 0, "max messages per subject %d (want unlimited)", got.MaxMsgsPerSubject)
	add(!got.DenyDelete, "message delete allowed (want deny_delete)")
	add(!got.DenyPurge, "purge allowed (want deny_purge)")
	add(got.AllowRollup, "rollup allowed (it purges)")
	add(got.AllowMsgTTL, "per-message TTL allowed (events would expire)")
	add(!got.AllowDirect, "direct get not allowed (want allow_direct)")
	add(!got.AllowAtomicPublish, "atomic batch publish not allowed (want allow_atomic)")
	add(got.Duplicates < want.Duplicates, "duplicate window %s (want at least %s)", got.Duplicates, want.Duplicates)
	add(got.Replicas < want.Replicas, "%d replicas (want at least %d)", got.Replicas, want.Replicas)
	add(got.PersistMode != jetstream.DefaultPersistMode, "asynchronous persist mode (want default)")
	return p
}
