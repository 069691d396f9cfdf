package resend_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/cmd/siterecovery/resend"
	"github.com/siterecovery/siterecovery/events/jetstream/jstest"
)

// TestResentUntilAnswered: a request meets no responder, then a responder
// that ignores its first send, then one that answers unavailable; it is
// sent again each time, with the same body, and the first real reply
// ends it.
func TestResentUntilAnswered(t *testing.T) {
	srv := jstest.MustRunServer(t)
	client, svc := jstest.MustConnect(t, srv.ClientURL()), jstest.MustConnect(t, srv.ClientURL())
	var seen atomic.Int64
	bodies := make(chan string, 16)
	type out struct {
		msg *nats.Msg
		err error
	}
	done := make(chan out, 1)
	go func() {
		msg, err := resend.Request(context.Background(), client, "sr.cmd.x", []byte(`{"command_id":"c1"}`), resend.Options{Timeout: 20 * time.Second})
		done <- out{msg, err}
	}()
	require.Eventually(t, func() bool { return client.Stats().OutMsgs >= 2 }, 10*time.Second, 5*time.Millisecond, "sent while no responder")
	_, err := svc.Subscribe("sr.cmd.x", func(m *nats.Msg) {
		bodies <- string(m.Data)
		switch seen.Add(1) {
		case 1: // lost: no reply
		case 2:
			reply := nats.NewMsg(m.Reply)
			reply.Header.Set(micro.ErrorCodeHeader, "unavailable")
			reply.Header.Set(micro.ErrorHeader, "log not answering")
			_ = svc.PublishMsg(reply)
		default:
			_ = m.Respond([]byte(`{"ok":true}`))
		}
	})
	require.NoError(t, err)
	require.NoError(t, svc.Flush())
	r := <-done
	require.NoError(t, r.err)
	require.JSONEq(t, `{"ok":true}`, string(r.msg.Data))
	require.EqualValues(t, 3, seen.Load(), "ignored, unavailable, answered")
	for range 3 {
		require.JSONEq(t, `{"command_id":"c1"}`, <-bodies, "every send carries the same body")
	}
}

// TestUnansweredSaysWhatWasTried: no responder until the timeout.
func TestUnansweredSaysWhatWasTried(t *testing.T) {
	srv := jstest.MustRunServer(t)
	nc := jstest.MustConnect(t, srv.ClientURL())
	start := time.Now()
	_, err := resend.Request(context.Background(), nc, "sr.q.status", []byte(`{}`), resend.Options{Timeout: time.Second})
	var un *resend.Unanswered
	require.True(t, errors.As(err, &un), "%v", err)
	require.Less(t, time.Since(start), 2*time.Second)
	require.Greater(t, un.Attempts, 2)
	require.True(t, un.NoResponders)
	require.GreaterOrEqual(t, un.Elapsed, time.Second)
	require.Contains(t, err.Error(), "sr.q.status: no control plane answered: ")
}

// TestOnceWaitsForTheSlowReply: Once does not resend a request whose reply
// is slow.
func TestOnceWaitsForTheSlowReply(t *testing.T) {
	srv := jstest.MustRunServer(t)
	client, svc := jstest.MustConnect(t, srv.ClientURL()), jstest.MustConnect(t, srv.ClientURL())
	var seen atomic.Int64
	_, err := svc.Subscribe("sr.cmd.vm.verify", func(m *nats.Msg) {
		seen.Add(1)
		go func() {
			<-time.After(resend.FirstResend + 500*time.Millisecond) // slower than a first resend would wait
			_ = m.Respond([]byte(`{}`))
		}()
	})
	require.NoError(t, err)
	require.NoError(t, svc.Flush())
	_, err = resend.Request(context.Background(), client, "sr.cmd.vm.verify", []byte(`{}`), resend.Options{Timeout: 10 * time.Second, Once: true})
	require.NoError(t, err)
	require.EqualValues(t, 1, seen.Load())
}
