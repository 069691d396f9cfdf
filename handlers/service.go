package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/events"
)

// ReadModel answers queries. projections.Store implements it.
type ReadModel interface {
	// Query answers the query name (sites, vm, jobs, ...) with params, a JSON
	// object. Errors wrap events.ErrNotFound or events.ErrInvalidArgument.
	// Safe for concurrent use.
	Query(ctx context.Context, name string, params json.RawMessage) (any, error)
	// WaitFor returns once the read model has applied log sequence seq, or
	// with ctx's error.
	WaitFor(ctx context.Context, seq uint64) error
}

// ServiceName is the micro service name (nats micro ls).
const ServiceName = "siterecovery"

// ServiceVersion is the micro service version.
const ServiceVersion = "0.1.0"

// Subject prefixes of commands and queries.
const (
	CommandPrefix = "sr.cmd."
	QueryPrefix   = "sr.q."
)

// Queries lists the query names served on sr.q.<name>.
var Queries = []string{"sites", "hosts", "vms", "vm", "plans", "plan", "jobs", "job", "events", "status",
	"clouds", "policies", "pairings", "netmaps"}

// Log field names.
const (
	logCommandID = "command_id"
	logAggregate = "aggregate"
	logSubject   = "subject"
	logCode      = "code"
)

// Defaults of New.
const (
	// DefaultTimeout bounds the handling of one request.
	DefaultTimeout = 30 * time.Second
)

// Service is the siterecovery micro service: commands decided against the
// log, queries answered by the read model. Several Services (serve
// instances) may run on one log: they share the endpoints' queue group.
type Service struct {
	log     events.Log
	cache   *foldCache
	rm      ReadModel
	logger  zerolog.Logger
	timeout time.Duration

	mu     sync.Mutex
	svc    registration
	ctx    context.Context
	cancel context.CancelFunc
	// closing stops new requests from being counted in wg.
	closing bool
	exts    []Extension
	wg      sync.WaitGroup
}

// registration is the service's place on the bus while it is open
// (nats.go registers it).
type registration interface {
	// Stop stops taking requests and deregisters the service; a request
	// being handled runs on. Called once per Open.
	Stop() error
}

// New returns a service over log and rm (rm may be nil: queries then answer
// unavailable). logger is used as given (the caller names the component).
func New(log events.Log, rm ReadModel, logger zerolog.Logger) *Service {
	return &Service{log: log, cache: newFoldCache(log, foldCacheSize), rm: rm, timeout: DefaultTimeout, logger: logger}
}

// Extend makes Open add e's endpoints too. Call it before Open.
func (s *Service) Extend(e Extension) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.exts = append(s.exts, e)
}

// commandFunc handles one command subject's request body.
type commandFunc func(ctx context.Context, body []byte) (Result, error)

// Commands returns the handler of every command subject.
func (s *Service) commands() map[string]commandFunc {
	m := map[string]commandFunc{
		"site.register": s.siteRegister, "site.unregister": s.siteUnregister,
		"host.register": s.hostRegister, "host.unregister": s.hostUnregister,
		"cloud.create": s.cloudCreate, "cloud.add_host": s.cloudAddHost,
		"policy.create": s.policyCreate, "policy.update": s.policyUpdate, "policy.delete": s.policyDelete,
		"pairing.create": s.pairingCreate, "pairing.delete": s.pairingDelete,
		"netmap.create": s.netmapCreate, "netmap.delete": s.netmapDelete,
		"vm.create": s.vmCreate, "plan.create": s.planCreate,
	}
	for _, op := range events.VMOperations {
		m["vm."+string(op)] = s.vmOp(op)
	}
	for _, verb := range append([]string{planUpdate, planDelete, planResume, planCancel}, planJobOps...) {
		m["plan."+verb] = s.planVerb(verb)
	}
	return m
}

// CommandSubjects lists every command subject, sr.cmd.<noun>.<verb>.
func CommandSubjects() []string {
	var out []string
	for k := range (&Service{}).commands() {
		out = append(out, CommandPrefix+k)
	}
	return out
}

// endpoints are the service's own: one per command and per query, each
// refused as unavailable once the service is closing.
func (s *Service) endpoints() []endpoint {
	var eps []endpoint
	for name, fn := range s.commands() {
		eps = append(eps, s.endpoint("cmd_"+strings.ReplaceAll(name, ".", "_"), CommandPrefix+name,
			func(ctx context.Context, _ string, body []byte) (any, error) { return fn(ctx, body) }))
	}
	for _, q := range Queries {
		eps = append(eps, s.endpoint("q_"+q, QueryPrefix+q,
			func(ctx context.Context, _ string, body []byte) (any, error) { return s.query(ctx, q, body) }))
	}
	return eps
}

// endpoint is one of the service's endpoints: handled within the service's
// timeout and counted in wg, so that Close waits for it.
func (s *Service) endpoint(name, subject string, fn handleFunc) endpoint {
	return endpoint{name: name, subject: subject, timeout: s.timeout, logger: s.logger, handle: s.tracked(fn)}
}

// tracked counts fn's calls in wg; once the service is closing, a request
// is refused as unavailable.
func (s *Service) tracked(fn handleFunc) handleFunc {
	return func(ctx context.Context, subject string, body []byte) (any, error) {
		s.mu.Lock()
		closing := s.closing
		if !closing {
			s.wg.Add(1)
		}
		s.mu.Unlock()
		if closing {
			return nil, fmt.Errorf("service is closing: %w", ErrUnavailable)
		}
		defer s.wg.Done()
		return fn(ctx, subject, body)
	}
}

// Close stops the service: no new request is taken, and those in flight
// finish or are abandoned when ctx ends. It is safe to call twice.
func (s *Service) Close(ctx context.Context) error {
	s.mu.Lock()
	svc, cancel := s.svc, s.cancel
	s.svc = nil
	if svc != nil {
		s.closing = true
	}
	s.mu.Unlock()
	if svc == nil {
		return nil
	}
	err := svc.Stop()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		err = errors.Join(err, fmt.Errorf("handlers: close: requests still in flight: %w", ctx.Err()))
	}
	cancel()
	<-done
	return err
}
