package test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// burstCmd is one command of the burst and what its sender saw.
type burstCmd struct {
	subject string
	body    obj
	id      string // command_id
	kind    string // aggregate kind of the entity it creates
	name    string // that entity
	code    string // the reply's error code, "" on success
	lost    bool   // no reply: the sender cannot know whether it was appended
}

// chain is the commands one client sends for entity i, in order: each
// needs the previous one.
func chain(client, i int) []*burstCmd {
	s, h, c, v := fmt.Sprintf("s-%d-%d", client, i), fmt.Sprintf("h-%d-%d", client, i), fmt.Sprintf("c-%d-%d", client, i), fmt.Sprintf("v-%d-%d", client, i)
	id := func(k int) string { return fmt.Sprintf("burst-%d-%d-%d", client, i, k) }
	return []*burstCmd{
		{subject: "sr.cmd.site.register", body: obj{"name": s}, id: id(0), kind: "site", name: s},
		{subject: "sr.cmd.host.register", body: obj{"name": h, "site": s}, id: id(1), kind: "host", name: h},
		{subject: "sr.cmd.cloud.create", body: obj{"name": c, "site": s, "hosts": []string{h}}, id: id(2), kind: "cloud", name: c},
		{subject: "sr.cmd.vm.create", body: obj{"name": v, "host": h, "disks": []obj{{"name": "d0", "size": 1 << 20}}}, id: id(3), kind: "vm", name: v},
	}
}

// send sends c with its command id and records the outcome.
func (c *burstCmd) send(p *plane) (bool, error) {
	code, reply, err := p.request(c.subject, withID(c), 3*time.Second)
	if err != nil {
		c.lost = true
		return false, err
	}
	c.code = code
	if code != "" {
		return false, fmt.Errorf("%s refused: %s", c.subject, reply)
	}
	return true, nil
}

// TestFaultServeKilledDuringCommandBurst kills serve (and its embedded
// NATS) with SIGKILL while eight clients send commands, restarts it on the
// same data directory, and checks: every command that was answered with
// success is in the log exactly once, the projections agree with the log,
// and the commands whose reply was lost, retried with their command_id,
// append nothing twice.
func TestFaultServeKilledDuringCommandBurst(t *testing.T) {
	data := t.TempDir()
	srv := startServe(t, data, freePort(t))
	const clients = 8
	var (
		mu     sync.Mutex
		sent   []*burstCmd
		wins   atomic.Int64
		killed atomic.Bool
		wg     sync.WaitGroup
	)
	for cl := range clients {
		nc, err := nats.Connect(srv.url(), nats.NoReconnect())
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		p := &plane{t: t, nc: nc}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !killed.Load(); i++ {
				for _, c := range chain(cl, i) {
					mu.Lock()
					sent = append(sent, c)
					mu.Unlock()
					ok, err := c.send(p)
					if ok {
						wins.Add(1)
						continue
					}
					if !c.lost && !killed.Load() {
						t.Errorf("refused before the kill: %v", err)
					}
					break // the rest of the chain needs this one
				}
			}
		}()
	}
	require.Eventually(t, func() bool { return wins.Load() >= 120 }, 60*time.Second, 10*time.Millisecond, "commands answered")
	// A little jitter puts the kill at any phase of the commands in
	// flight: received, appended but not answered, answered.
	time.Sleep(time.Duration(rand.IntN(8000)) * time.Microsecond)
	killed.Store(true)
	srv.kill()
	wg.Wait()
	atKill := wins.Load()

	srv = startServe(t, data, srv.port)
	p := newPlane(t, srv.url())
	log := readLog(t, p.nc)
	var lost, lostAppended []*burstCmd
	for _, c := range sent {
		n := len(log.byCommand[c.id])
		switch {
		case c.code == "" && !c.lost:
			require.NotZero(t, n, "command %s (%s %v) was answered with success but is not in the log", c.id, c.subject, c.body)
		case c.lost:
			lost = append(lost, c)
			if n > 0 {
				lostAppended = append(lostAppended, c)
			}
		}
		requireOnce(t, log, c.id)
	}
	t.Logf("%d commands answered with success before SIGKILL, %d sent, %d replies lost (%d of them appended)",
		atKill, len(sent), len(lost), len(lostAppended))
	requireProjectionsAgree(t, p, log)

	// The senders retry what they could not know, with the same command id.
	for _, c := range lost {
		before := len(log.byCommand[c.id])
		code, reply, err := p.request(c.subject, withID(c), 15*time.Second)
		require.NoError(t, err)
		if code == "not_found" && before == 0 {
			continue // it needed an earlier command of its chain that was lost
		}
		require.Empty(t, code, "retry of %s: %s", c.id, reply)
		var res struct {
			Duplicate bool `json:"duplicate"`
		}
		require.NoError(t, json.Unmarshal(reply, &res))
		// A command of several steps (a claim on the host, then the cloud)
		// may have been cut between them: its retry completes it and is no
		// duplicate. One whose last event is in the log is one.
		done := slices.ContainsFunc(log.byCommand[c.id], func(e logEvent) bool { return strings.HasSuffix(c.subject, commandVerb(e.Type)) })
		require.Equal(t, done, res.Duplicate, "retry of %s (in the log %d times): %s", c.id, before, reply)
	}
	log = readLog(t, p.nc)
	for _, c := range sent {
		requireOnce(t, log, c.id)
	}
	requireProjectionsAgree(t, p, log)
}

// commandVerb maps the last event of each burst command to its subject's
// ending.
func commandVerb(eventType string) string {
	switch eventType {
	case "site_registered":
		return "site.register"
	case "host_registered":
		return "host.register"
	case "cloud_created":
		return "cloud.create"
	case "vm_created":
		return "vm.create"
	}
	return "\x00" // a claim or another step: never a command's last event
}

func withID(c *burstCmd) obj {
	body := obj{"command_id": c.id}
	for k, v := range c.body {
		body[k] = v
	}
	return body
}

// logEvent is an event of SR_EVENTS as any NATS client reads it.
type logEvent struct {
	Seq       uint64
	Subject   string
	Type      string          `json:"type"`
	CommandID string          `json:"command_id"`
	Data      json.RawMessage `json:"data"`
}

// eventLog is the whole SR_EVENTS stream.
type eventLog struct {
	last      uint64
	events    []logEvent
	byCommand map[string][]logEvent
}

// readLog reads SR_EVENTS from the first message to the last with an
// ordered consumer.
func readLog(t testing.TB, nc *nats.Conn) eventLog {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	s, err := js.Stream(ctx, "SR_EVENTS")
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	l := eventLog{last: info.State.LastSeq, byCommand: map[string][]logEvent{}}
	if l.last == 0 {
		return l
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	for uint64(len(l.events)) < info.State.Msgs {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		require.NoError(t, err)
		for m := range batch.Messages() {
			meta, err := m.Metadata()
			require.NoError(t, err)
			e := logEvent{Seq: meta.Sequence.Stream, Subject: m.Subject()}
			require.NoError(t, json.Unmarshal(m.Data(), &e), "event %d: %s", e.Seq, m.Data())
			l.events = append(l.events, e)
			l.byCommand[e.CommandID] = append(l.byCommand[e.CommandID], e)
		}
		require.NoError(t, batch.Error())
	}
	return l
}

// requireOnce checks that no event type of a command appears twice.
func requireOnce(t testing.TB, l eventLog, id string) {
	t.Helper()
	seen := map[string]uint64{}
	for _, e := range l.byCommand[id] {
		key := e.Subject
		require.Zero(t, seen[key], "command %s appended %s twice (seqs %d and %d)", id, key, seen[key], e.Seq)
		seen[key] = e.Seq
	}
}

// requireProjectionsAgree checks that sites, hosts and vms list exactly
// the entities the log created, once the read model has caught up.
func requireProjectionsAgree(t testing.TB, p *plane, l eventLog) {
	t.Helper()
	want := map[string][]string{}
	created := map[string]string{"site_registered": "sites", "host_registered": "hosts", "vm_created": "vms"}
	for _, e := range l.events {
		if q, ok := created[e.Type]; ok {
			var d struct {
				Name string `json:"name"`
			}
			require.NoError(t, json.Unmarshal(e.Data, &d))
			want[q] = append(want[q], d.Name)
		}
	}
	for _, q := range []string{"sites", "hosts", "vms"} {
		var views []struct {
			Name string `json:"name"`
		}
		require.NoError(t, json.Unmarshal(p.must("sr.q."+q, obj{"min_seq": l.last}), &views))
		got := make([]string, len(views))
		for i, v := range views {
			got[i] = v.Name
		}
		slices.Sort(got)
		slices.Sort(want[q])
		require.Equal(t, want[q], got, "query %s against the log", q)
	}
}
