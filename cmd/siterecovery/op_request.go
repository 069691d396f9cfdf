package main

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/siterecovery/siterecovery/cmd/siterecovery/resend"
)

// A request rides over a takeover: right after a site is lost no control
// plane may answer for a few seconds (docs/operations.md, "Losing a
// site"), so it is sent again, with the same body (a command keeps its
// command_id and is applied once), until --timeout (package resend).

// defaultTimeout is --timeout's default: the measured takeover after a site
// loss (4 to 9 s for the event stream's election) with room to spare.
const defaultTimeout = 30 * time.Second

// newCommandID is the command_id the CLI gives a command sent without one.
func newCommandID() string { return resend.NewCommandID("cli-") }

// request sends body to subject, again while no control plane answers
// (o.SendOnce: only while none responds), until o.Timeout, and returns the
// reply payload, or a *refusedError for an error reply or when none came:
// that one says how many attempts were made, over how long, and how the
// last one ended.
func request(nc *nats.Conn, o opOptions, subject string, body any) ([]byte, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	msg, err := resend.Request(context.Background(), nc, subject, raw, resend.Options{Timeout: o.Timeout, Once: o.SendOnce})
	var un *resend.Unanswered
	switch {
	case errors.As(err, &un):
		return nil, &refusedError{Code: "unavailable", Message: un.Error()}
	case err != nil:
		if denied := permissionDenied(nc, err); denied != nil {
			return nil, denied
		}
		return nil, &refusedError{Code: "unavailable", Message: err.Error()}
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		return nil, &refusedError{Code: code, Message: msg.Header.Get(micro.ErrorHeader)}
	}
	return msg.Data, nil
}
