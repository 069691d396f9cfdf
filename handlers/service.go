package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
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
	svc    micro.Service
	ctx    context.Context
	cancel context.CancelFunc
	// closing stops new requests from being counted in wg.
	closing bool
	exts    []Extension
	wg      sync.WaitGroup
}

// Extension adds its own endpoints to the micro service when it opens;
// *AgentHandlers is one. ctx ends when the service closes.
type Extension interface {
	AddEndpoints(ctx context.Context, svc micro.Service) error
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

// Open registers the micro service and its endpoints on nc (in the micro
// queue group, so several instances share the load). It fails when already
// open. The connection stays the caller's.
func (s *Service) Open(ctx context.Context, nc *nats.Conn) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("handlers: open: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.svc != nil {
		return fmt.Errorf("handlers: already open")
	}
	svc, err := micro.AddService(nc, micro.Config{
		Name: ServiceName, Version: ServiceVersion,
		Description: "siterecovery control plane: commands sr.cmd.<noun>.<verb>, queries sr.q.<name>",
	})
	if err != nil {
		return fmt.Errorf("handlers: add service: %w", err)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.svc, s.closing = svc, false
	err = s.addEndpoints(svc)
	for _, e := range s.exts {
		if err == nil {
			err = e.AddEndpoints(s.ctx, svc)
		}
	}
	if err == nil {
		// A round trip: the server has every endpoint's subscription when
		// Open returns, so a request sent right after finds a responder.
		err = nc.FlushTimeout(10 * time.Second)
	}
	if err != nil {
		s.cancel()
		s.svc = nil
		return errors.Join(err, svc.Stop())
	}
	return nil
}

func (s *Service) addEndpoints(svc micro.Service) error {
	for name, fn := range s.commands() {
		subject := CommandPrefix + name
		h := s.handler(subject, func(ctx context.Context, body []byte) (any, error) { return fn(ctx, body) })
		if err := svc.AddEndpoint("cmd_"+strings.ReplaceAll(name, ".", "_"), h, micro.WithEndpointSubject(subject)); err != nil {
			return fmt.Errorf("handlers: endpoint %s: %w", subject, err)
		}
	}
	for _, q := range Queries {
		subject := QueryPrefix + q
		h := s.handler(subject, func(ctx context.Context, body []byte) (any, error) { return s.query(ctx, q, body) })
		if err := svc.AddEndpoint("q_"+q, h, micro.WithEndpointSubject(subject)); err != nil {
			return fmt.Errorf("handlers: endpoint %s: %w", subject, err)
		}
	}
	return nil
}

// handler runs fn for each request and replies. micro calls it from the
// endpoint's subscription, one request at a time per endpoint and instance
// (a reply must be sent before the handler returns); several instances in the
// queue group, and different endpoints, run concurrently, and the log's
// optimistic concurrency keeps each aggregate consistent.
func (s *Service) handler(subject string, fn func(context.Context, []byte) (any, error)) micro.Handler {
	return micro.HandlerFunc(func(req micro.Request) {
		s.mu.Lock()
		ctx, closing := s.ctx, s.closing
		if !closing {
			s.wg.Add(1)
		}
		s.mu.Unlock()
		if closing {
			s.reply(req, subject, nil, fmt.Errorf("service is closing: %w", ErrUnavailable))
			return
		}
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(ctx, s.timeout)
		defer cancel()
		res, err := fn(ctx, req.Data())
		s.reply(req, subject, res, err)
	})
}

// errorBody is the JSON of an error reply; an agent decodes it as an
// agentproto.Reply.
type errorBody struct {
	Error agentproto.Error `json:"error"`
}

// reply answers req with res, or with err as an error reply (body and micro
// error headers). It logs the error: this is where errors are handled.
func (s *Service) reply(req micro.Request, subject string, res any, err error) {
	if err == nil {
		if rerr := req.RespondJSON(res); rerr != nil {
			s.logger.Error().Err(rerr).Str(logSubject, subject).Msg("reply failed")
		}
		return
	}
	var body errorBody
	body.Error.Code, body.Error.Message = Code(err), err.Error()
	ev := s.logger.Info()
	if body.Error.Code == CodeUnavailable {
		ev = s.logger.Error()
	}
	ev.Err(err).Str(logSubject, subject).Str(logCode, body.Error.Code).Msg("request refused")
	raw, merr := json.Marshal(body)
	if merr != nil {
		raw = nil
	}
	if rerr := req.Error(body.Error.Code, body.Error.Message, raw); rerr != nil {
		s.logger.Error().Err(rerr).Str(logSubject, subject).Msg("error reply failed")
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
