package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
)

// The edge of the package: the micro service's registration and every NATS
// call. The components declare what they answer as endpoints and what they
// ask as small interfaces (sourceAgent, registration); only this file knows
// nats.go and micro.

// handleFunc handles one request: subject is the request's own (for an
// endpoint with a * token, the concrete one), body its JSON. It returns the
// reply, sent as JSON, or an error, sent as {"error": {"code", "message"}}
// with the micro error headers and code Code(err) (not_found for an error
// matching events.ErrNotFound, invalid_argument, ...). micro calls it one
// request at a time per endpoint and service instance; different endpoints,
// and the instances sharing a queue group, run concurrently (the log's
// optimistic concurrency keeps each aggregate consistent). Every command and
// report is idempotent by its command_id: one sent again after a lost reply
// appends nothing twice.
type handleFunc func(ctx context.Context, subject string, body []byte) (any, error)

// endpoint is one subject the service answers.
type endpoint struct {
	// name is the micro endpoint's name (nats micro info).
	name string
	// subject may hold * tokens (sr.cmd.agent.*.<verb>).
	subject string
	// everyInstance gives each request to every instance of the service
	// (no queue group).
	everyInstance bool
	// timeout bounds the handling of one request (0: none beyond ctx).
	timeout time.Duration
	// routine refusals (an agent's late or repeated report) are logged at
	// debug level.
	routine bool
	logger  zerolog.Logger
	handle  handleFunc
}

// Extension adds its own endpoints to the micro service when it opens;
// *AgentHandlers is one. ctx ends when the service closes.
type Extension interface {
	AddEndpoints(ctx context.Context, svc micro.Service) error
}

var (
	_ Extension    = (*AgentHandlers)(nil)
	_ Extension    = (*FailoverReports)(nil)
	_ Extension    = (*VerifyHandlers)(nil)
	_ Extension    = (*AutomationHandlers)(nil)
	_ registration = micro.Service(nil)
	_ sourceAgent  = natsAgents{}
)

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
	err = addEndpoints(s.ctx, svc, s.endpoints())
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

// AddEndpoints adds one endpoint per replication report verb to svc,
// subject sr.cmd.agent.*.<verb>; heartbeats reach every instance.
func (a *AgentHandlers) AddEndpoints(ctx context.Context, svc micro.Service) error {
	return addEndpoints(ctx, svc, a.endpoints())
}

// AddEndpoints adds one endpoint per failover report verb to svc, subject
// sr.cmd.agent.*.<verb>.
func (f *FailoverReports) AddEndpoints(ctx context.Context, svc micro.Service) error {
	return addEndpoints(ctx, svc, f.endpoints())
}

// AddEndpoints adds the vm_verify endpoint to svc.
func (v *VerifyHandlers) AddEndpoints(ctx context.Context, svc micro.Service) error {
	return addEndpoints(ctx, svc, v.endpoints())
}

// AddEndpoints adds the automation commands' and query's endpoints to svc,
// in the service's queue group.
func (h *AutomationHandlers) AddEndpoints(ctx context.Context, svc micro.Service) error {
	return addEndpoints(ctx, svc, h.endpoints())
}

func addEndpoints(ctx context.Context, svc micro.Service, eps []endpoint) error {
	for _, ep := range eps {
		opts := []micro.EndpointOpt{micro.WithEndpointSubject(ep.subject)}
		if ep.everyInstance {
			opts = append(opts, micro.WithEndpointQueueGroupDisabled())
		}
		if err := svc.AddEndpoint(ep.name, serve(ctx, ep), opts...); err != nil {
			return fmt.Errorf("handlers: endpoint %s: %w", ep.subject, err)
		}
	}
	return nil
}

// serve handles each request of ep under ctx (ended when the service
// closes) and replies before it returns, as micro wants.
func serve(ctx context.Context, ep endpoint) micro.Handler {
	return micro.ContextHandler(ctx, func(ctx context.Context, req micro.Request) {
		if ep.timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, ep.timeout)
			defer cancel()
		}
		res, err := ep.handle(ctx, req.Subject(), req.Data())
		respond(req, ep, res, err)
	})
}

// errorBody is the JSON of an error reply; an agent decodes it as an
// agentproto.Reply.
type errorBody struct {
	Error agentproto.Error `json:"error"`
}

// respond answers req with res, or with err as an error reply (body and micro
// error headers). It logs the error: this is where errors are handled.
func respond(req micro.Request, ep endpoint, res any, err error) {
	log := ep.logger.With().Str(logSubject, req.Subject()).Logger()
	if err == nil {
		if rerr := req.RespondJSON(res); rerr != nil {
			log.Error().Err(rerr).Msg("reply failed")
		}
		return
	}
	var body errorBody
	body.Error.Code, body.Error.Message = Code(err), err.Error()
	lvl := zerolog.InfoLevel
	switch {
	case ep.routine:
		lvl = zerolog.DebugLevel
	case body.Error.Code == CodeUnavailable:
		lvl = zerolog.ErrorLevel
	}
	log.WithLevel(lvl).Err(err).Str(logCode, body.Error.Code).Msg("request refused")
	raw, merr := json.Marshal(body)
	if merr != nil {
		raw = nil
	}
	if rerr := req.Error(body.Error.Code, body.Error.Message, raw); rerr != nil {
		log.Error().Err(rerr).Msg("error reply failed")
	}
}

// NewVerifyHandlers returns the verify handler appending to log and asking
// agents over nc.
func NewVerifyHandlers(log events.Log, nc *nats.Conn, logger zerolog.Logger) *VerifyHandlers {
	return newVerifyHandlers(log, natsAgents{nc: nc}, logger)
}

// natsAgents asks agents over a NATS connection. Safe for concurrent use.
type natsAgents struct{ nc *nats.Conn }

// Verify sends req to host's verify subject for vm and decodes the answer.
func (a natsAgents) Verify(ctx context.Context, host, vm string, req agentproto.VerifyRequest) (agentproto.VerifyReply, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return agentproto.VerifyReply{}, fmt.Errorf("verify request: %w", err)
	}
	msg, err := a.nc.RequestWithContext(ctx, agentproto.VerifySubject(host, vm), data)
	if err != nil {
		return agentproto.VerifyReply{}, fmt.Errorf("source agent %s did not answer the verify: %v: %w", host, err, ErrUnavailable)
	}
	var out agentproto.VerifyReply
	if err := json.Unmarshal(msg.Data, &out); err != nil {
		return agentproto.VerifyReply{}, fmt.Errorf("source agent %s: verify reply %q: %w", host, msg.Data, ErrUnavailable)
	}
	return out, nil
}
