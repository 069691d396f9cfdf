package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/jetstream"
	"github.com/siterecovery/siterecovery/handlers"
)

// GET /api/v1/stream: every event appended to the log, in log order, as a
// server-sent event whose id is the event's sequence and whose data is a
// streamEvent. The stream starts after the last event (or after ?from=SEQ
// minus one, or after the Last-Event-ID a reconnecting EventSource sends,
// so a reconnect misses nothing). It first sends a "ready" event
// {"from": SEQ}. An event the log cannot decode is reported as an "error"
// event naming its sequence, then skipped.

// streamEvent is the data of one event on the stream.
type streamEvent struct {
	Seq         uint64      `json:"seq"`
	Subject     string      `json:"subject"`
	Kind        string      `json:"kind"`
	ID          string      `json:"id"`
	Type        string      `json:"type"`
	At          time.Time   `json:"at"`
	CommandID   string      `json:"command_id"`
	Correlation string      `json:"correlation_id"`
	Data        events.Data `json:"data"`
}

// streamBatch is what the stream's reader hands to the writer: records, or
// a record the log could not decode (skipped), or the end.
type streamBatch struct {
	recs []events.Record
	bad  *jetstream.RecordError
	err  error
}

// streamReadBatch is how many records one read takes.
const streamReadBatch = 256

func (a *httpAPI) stream(w http.ResponseWriter, r *http.Request) {
	select {
	case a.streams <- struct{}{}:
		defer func() { <-a.streams }()
	default:
		a.fail(w, r, apiErrorf(http.StatusServiceUnavailable, handlers.CodeUnavailable, "too many event streams open (%d)", streamMaxClients))
		return
	}
	from, err := a.streamFrom(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(a.ctx, cancel)()
	batches := make(chan streamBatch)
	var wg sync.WaitGroup
	wg.Go(func() { a.readStream(ctx, from, batches) })
	defer wg.Wait()
	defer cancel() // runs before wg.Wait: the reader stops
	a.writeStream(ctx, w, r, from, batches)
}

// streamFrom is the first sequence the stream sends.
func (a *httpAPI) streamFrom(r *http.Request) (uint64, error) {
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		seq, err := strconv.ParseUint(strings.TrimSpace(id), 10, 64)
		if err != nil {
			return 0, apiErrorf(http.StatusBadRequest, handlers.CodeInvalidArgument, "Last-Event-ID %q is not an event sequence", id)
		}
		return seq + 1, nil
	}
	if v := r.URL.Query().Get("from"); v != "" {
		seq, err := strconv.ParseUint(v, 10, 64)
		if err != nil || seq == 0 {
			return 0, apiErrorf(http.StatusBadRequest, handlers.CodeInvalidArgument, "from=%q is not an event sequence (1 or more)", v)
		}
		return seq, nil
	}
	last, err := a.log.LastSeq(r.Context())
	if err != nil {
		return 0, fmt.Errorf("event stream: last sequence of the log: %w", err)
	}
	return last + 1, nil
}

// readStream follows the log from from and sends what it reads to out until
// ctx ends or the log fails; it reopens the cursor past a bad record.
func (a *httpAPI) readStream(ctx context.Context, from uint64, out chan<- streamBatch) {
	send := func(b streamBatch) bool {
		select {
		case out <- b:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		next, b := a.readUntilBad(ctx, from, send)
		if b.bad == nil {
			send(b)
			return
		}
		if !send(b) {
			return
		}
		from = next
	}
}

// readUntilBad reads with one cursor until it fails. At a bad record it
// returns the sequence after it and the record's error.
func (a *httpAPI) readUntilBad(ctx context.Context, from uint64, send func(streamBatch) bool) (uint64, streamBatch) {
	cur, err := a.log.Follow(ctx, from)
	if err != nil {
		return 0, streamBatch{err: err}
	}
	defer cur.Close()
	for {
		recs, err := cur.Next(ctx, streamReadBatch)
		var bad *jetstream.RecordError
		switch {
		case errors.As(err, &bad):
			return bad.Seq + 1, streamBatch{bad: bad}
		case err != nil:
			return 0, streamBatch{err: err}
		case !send(streamBatch{recs: recs}):
			return 0, streamBatch{err: ctx.Err()}
		}
	}
}

// writeStream writes the stream until the client leaves, the server shuts
// down or the log fails.
func (a *httpAPI) writeStream(ctx context.Context, w http.ResponseWriter, r *http.Request, from uint64, batches <-chan streamBatch) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	err := writeSSE(w, rc, fmt.Sprintf("retry: 2000\nevent: ready\ndata: {\"from\":%d}\n\n", from))
	keepalive := time.NewTicker(streamKeepalive)
	defer keepalive.Stop()
	for err == nil {
		select {
		case <-ctx.Done():
			return
		case <-keepalive.C:
			err = writeSSE(w, rc, ": keepalive\n\n")
		case b := <-batches:
			err = a.writeBatch(w, rc, b)
		}
	}
	if ctx.Err() == nil && !errors.Is(err, errClientGone) {
		a.logger.Error().Err(err).Str(logHTTPPath, r.URL.Path).Msg("event stream ended")
	}
}

func (a *httpAPI) writeBatch(w io.Writer, rc *http.ResponseController, b streamBatch) error {
	switch {
	case b.bad != nil:
		a.logger.Error().Err(b.bad).Msg("event stream: skipping an event the log cannot decode")
		msg, err := json.Marshal(map[string]any{"seq": b.bad.Seq, "subject": b.bad.Subject, "message": b.bad.Error()})
		if err != nil {
			return fmt.Errorf("event stream: encode error event: %w", err)
		}
		return writeSSE(w, rc, fmt.Sprintf("id: %d\nevent: error\ndata: %s\n\n", b.bad.Seq, msg))
	case b.err != nil:
		_ = writeSSE(w, rc, "event: error\ndata: {\"message\":\"the event log stopped\"}\n\n")
		return fmt.Errorf("event stream: %w", b.err)
	}
	var sb strings.Builder
	for _, rec := range b.recs {
		data, err := json.Marshal(newStreamEvent(rec))
		if err != nil {
			return fmt.Errorf("event stream: encode event %d: %w", rec.Seq, err)
		}
		fmt.Fprintf(&sb, "id: %d\ndata: %s\n\n", rec.Seq, data)
	}
	return writeSSE(w, rc, sb.String())
}

func newStreamEvent(r events.Record) streamEvent {
	return streamEvent{
		Seq: r.Seq, Subject: r.Aggregate.Subject(r.Type()), Kind: string(r.Aggregate.Kind), ID: r.Aggregate.ID,
		Type: string(r.Type()), At: r.Meta.At, CommandID: r.Meta.CommandID, Correlation: r.Meta.CorrelationID, Data: r.Data,
	}
}

func writeSSE(w io.Writer, rc *http.ResponseController, s string) error {
	if _, err := io.WriteString(w, s); err != nil {
		return fmt.Errorf("%w: %v", errClientGone, err)
	}
	if err := rc.Flush(); err != nil {
		return fmt.Errorf("%w: %v", errClientGone, err)
	}
	return nil
}
