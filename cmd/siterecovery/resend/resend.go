package resend

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nuid"
)

// Resending: the first resend after FirstResend without a reply, each next
// one after twice as long, at most MaxResend; after no responders or an
// unavailable reply, again after NoResponderPause.
const (
	FirstResend      = 2 * time.Second
	MaxResend        = 8 * time.Second
	NoResponderPause = 250 * time.Millisecond
)

// codeUnavailable is the service's error code for "cannot do it now"
// (handlers.CodeUnavailable).
const codeUnavailable = "unavailable"

// NewCommandID is a command_id for a command sent without one, so that its
// resends are recognised as one command.
func NewCommandID(prefix string) string { return prefix + nuid.Next() }

// Options bound a Request.
type Options struct {
	// Timeout bounds the whole request, from the first send (and ctx's
	// deadline, when sooner).
	Timeout time.Duration
	// Once: send again only while there is no responder, never because
	// the reply is slow or unavailable (a long verify).
	Once bool
}

// Request sends data to subject and returns the first reply to any of its
// sends: the reply, error replies included (micro's error headers), except
// an unavailable one, which is sent again (unless o.Once). It returns an
// *Unanswered when none came in time, or the connection's error.
func Request(ctx context.Context, nc *nats.Conn, subject string, data []byte, o Options) (*nats.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", subject, err)
	}
	defer sub.Unsubscribe() //nolint:errcheck // nothing to do about it
	s := sends{ctx: ctx, sub: sub, once: o.Once, timeout: o.Timeout, start: time.Now(), resend: FirstResend}
	s.err.Subject = subject
	for {
		if err := nc.PublishRequest(subject, inbox, data); err != nil {
			return nil, fmt.Errorf("%s: %w (%d attempt(s) over %s)", subject, err, s.err.Attempts, s.elapsed())
		}
		s.err.Attempts++
		if msg, again, err := s.await(); !again {
			return msg, err
		}
	}
}

// sends is one request's sends so far.
type sends struct {
	ctx     context.Context
	sub     *nats.Subscription
	once    bool
	timeout time.Duration
	start   time.Time
	resend  time.Duration
	err     Unanswered
}

func (s *sends) elapsed() time.Duration { return time.Since(s.start).Round(time.Millisecond) }

// await waits for a reply after a send; again says to send again.
func (s *sends) await() (*nats.Msg, bool, error) {
	wait := s.resend
	if s.once {
		wait = s.timeout // the request's own deadline ends it
	}
	actx, cancel := context.WithTimeout(s.ctx, wait)
	msg, err := s.sub.NextMsgWithContext(actx)
	cancel()
	switch {
	case errors.Is(err, context.DeadlineExceeded) && s.ctx.Err() == nil:
		s.err.Last, s.err.NoResponders = fmt.Sprintf("no reply within %s", wait), false
		s.resend = min(2*s.resend, MaxResend)
		return nil, true, nil
	case errors.Is(err, context.DeadlineExceeded) && s.err.Last == "":
		s.err.Last = "no reply"
		return nil, false, s.unanswered()
	case errors.Is(err, context.DeadlineExceeded):
		return nil, false, s.unanswered()
	case errors.Is(err, nats.ErrNoResponders):
		s.err.Last, s.err.NoResponders = "no responders", true
	case err != nil:
		return nil, false, fmt.Errorf("%s: %w (%d attempt(s) over %s)", s.err.Subject, err, s.err.Attempts, s.elapsed())
	case msg.Header.Get(micro.ErrorCodeHeader) == codeUnavailable && !s.once:
		s.err.Last, s.err.NoResponders = msg.Header.Get(micro.ErrorHeader), false
	default:
		return msg, false, nil
	}
	return s.pause()
}

// pause waits NoResponderPause before the next send, unless a reply to an
// earlier send comes first.
func (s *sends) pause() (*nats.Msg, bool, error) {
	actx, cancel := context.WithTimeout(s.ctx, NoResponderPause)
	defer cancel()
	msg, err := s.sub.NextMsgWithContext(actx)
	switch {
	case err == nil && !(msg.Header.Get(micro.ErrorCodeHeader) == codeUnavailable && !s.once):
		return msg, false, nil
	case s.ctx.Err() != nil:
		return nil, false, s.unanswered()
	}
	return nil, true, nil
}

func (s *sends) unanswered() error {
	e := s.err
	e.Elapsed = time.Since(s.start)
	return &e
}
