package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/siterecovery/siterecovery/events"
)

// Tables for people: the columns each list shows, in order (absent fields
// print "-").
var (
	hostColumns = []string{"name", "site", "reachability", "last_seen", "clouds", "vms"}
	vmColumns   = []string{"name", "host", "protection_state", "test_failover_state", "health", "active_site", "recovery_host", "rpo_seconds", "epoch"}
	jobColumns  = []string{"id", "operation", "target", "state", "started_at", "ended_at"}
)

// commandReply is the reply to a command.
type commandReply struct {
	CommandID string   `json:"command_id"`
	Job       string   `json:"job"`
	Seq       uint64   `json:"seq"`
	Events    []string `json:"events"`
	Duplicate bool     `json:"duplicate"`
}

// renderResult prints a command's reply in one or two lines.
func renderResult(w io.Writer, name string, raw []byte) error {
	var r commandReply
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("reply: %w", err)
	}
	note := ""
	if r.Duplicate {
		note = " (already applied: duplicate command id)"
	}
	fmt.Fprintf(w, "%s: ok: %s (seq %d, command %s)%s\n", name, strings.Join(r.Events, ", "), r.Seq, r.CommandID, note)
	if r.Job != "" {
		fmt.Fprintf(w, "job: %s\n", r.Job)
	}
	return nil
}

// renderList returns a renderer of a JSON array of objects as a table.
func renderList(columns ...string) func(io.Writer, []byte) error {
	return func(w io.Writer, raw []byte) error {
		var rows []map[string]any
		if err := decodeJSON(raw, &rows); err != nil {
			return fmt.Errorf("reply is not a list: %w", err)
		}
		if len(rows) == 0 {
			_, err := fmt.Fprintln(w, "(none)")
			return err
		}
		return table(w, columns, rows)
	}
}

// agoColumns are the times a table prints with how long ago they were: a
// host's last heartbeat.
var agoColumns = []string{"last_seen"}

func table(w io.Writer, columns []string, rows []map[string]any) error {
	now := time.Now()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(columns, "\t")))
	for _, row := range rows {
		cells := make([]string, len(columns))
		for i, c := range columns {
			cells[i] = cell(row[c])
			if slices.Contains(agoColumns, c) {
				cells[i] = agoCell(row[c], now)
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// cell prints one JSON value: lists of scalars comma-separated, nothing as
// "-".
func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		if x == "" {
			return "-"
		}
		return x
	case json.Number:
		return x.String()
	case bool:
		return fmt.Sprintf("%t", x)
	case []any:
		if len(x) == 0 {
			return "-"
		}
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = cell(e)
		}
		return strings.Join(parts, ",")
	}
	raw, _ := json.Marshal(v)
	return string(raw)
}

// agoCell prints an RFC 3339 time to the second with how long before now
// it was ("2026-12-04T21:09:23Z (4s ago)"); anything else as cell does.
func agoCell(v any, now time.Time) string {
	s, ok := v.(string)
	t, err := time.Parse(time.RFC3339Nano, s)
	if !ok || err != nil {
		return cell(v)
	}
	ago := max(now.Sub(t), 0).Round(time.Second)
	return fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.RFC3339), ago)
}

// decodeJSON decodes raw keeping numbers as written (sizes, sequences).
func decodeJSON(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return dec.Decode(v)
}

// renderObject prints an object as "key: value" lines, lists of objects as
// indented tables.
func renderObject(w io.Writer, raw []byte) error {
	var obj map[string]any
	if err := decodeJSON(raw, &obj); err != nil {
		return fmt.Errorf("reply is not an object: %w", err)
	}
	return printObject(w, obj, nil)
}

// printObject prints first the keys of order that obj has, then the others
// sorted; nested lists of objects become tables.
func printObject(w io.Writer, obj map[string]any, order []string) error {
	keys := slices.Clone(order)
	var rest []string
	for k := range obj {
		if !slices.Contains(order, k) {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	var nested []string
	for _, k := range append(keys, rest...) {
		v, ok := obj[k]
		if !ok {
			continue
		}
		if rows, ok := objectList(v); ok && len(rows) > 0 {
			nested = append(nested, k)
			continue
		}
		fmt.Fprintf(tw, "%s:\t%s\n", k, cell(v))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, k := range nested {
		rows, _ := objectList(obj[k])
		fmt.Fprintf(w, "\n%s:\n", k)
		if err := table(w, columnsOf(rows), rows); err != nil {
			return err
		}
	}
	return nil
}

func objectList(v any) ([]map[string]any, bool) {
	list, ok := v.([]any)
	if !ok {
		return nil, false
	}
	rows := make([]map[string]any, 0, len(list))
	for _, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, false
		}
		rows = append(rows, m)
	}
	return rows, true
}

// columnsOf is the sorted union of the rows' keys, "id" and "name" first.
func columnsOf(rows []map[string]any) []string {
	var cols []string
	for _, r := range rows {
		for k := range r {
			if !slices.Contains(cols, k) {
				cols = append(cols, k)
			}
		}
	}
	sort.Slice(cols, func(i, j int) bool {
		pi, pj := colRank(cols[i]), colRank(cols[j])
		if pi != pj {
			return pi < pj
		}
		return cols[i] < cols[j]
	})
	return cols
}

func colRank(c string) int {
	switch c {
	case "id", "seq":
		return 0
	case "name":
		return 1
	}
	return 2
}

// vmOrder is the order of vm show's fields.
var vmOrder = []string{"name", "host", "cloud", "protection_state", "test_failover_state", "health", "allowed_operations",
	"source_host", "source_site", "recovery_host", "target_site", "active_site", "epoch", "rpo_seconds", "policy", "pairing"}

func renderVM(w io.Writer, raw []byte) error {
	var obj map[string]any
	if err := decodeJSON(raw, &obj); err != nil {
		return fmt.Errorf("reply is not an object: %w", err)
	}
	return printObject(w, obj, vmOrder)
}

// runStatus prints the fabric and the VMs at a glance: the status query's
// counts, then the sites, hosts and VMs.
func runStatus(o opOptions, req map[string]any, stdout io.Writer) error {
	nc, err := opConnect(o)
	if err != nil {
		return err
	}
	defer nc.Close()
	parts := map[string]json.RawMessage{}
	for _, q := range []string{"status", "sites", "hosts", "vms"} {
		raw, err := request(nc, o, "sr.q."+q, req)
		if err != nil {
			return err
		}
		parts[q] = raw
	}
	if o.JSON {
		raw, err := json.Marshal(parts)
		if err != nil {
			return err
		}
		return printJSON(stdout, raw)
	}
	return printStatus(stdout, parts)
}

func printStatus(w io.Writer, parts map[string]json.RawMessage) error {
	var st struct {
		Sites int `json:"sites"`
		Hosts struct {
			Total, Reachable, Unknown, Unreachable int
		} `json:"hosts"`
		VMs struct {
			Total    int            `json:"total"`
			ByState  map[string]int `json:"by_protection_state"`
			ByHealth map[string]int `json:"by_health"`
		} `json:"vms"`
		Jobs       map[string]int `json:"jobs"`
		CatchingUp bool           `json:"catching_up"`
		Reason     string         `json:"catching_up_reason"`
	}
	if err := json.Unmarshal(parts["status"], &st); err != nil {
		return fmt.Errorf("status reply: %w", err)
	}
	if st.CatchingUp {
		fmt.Fprintf(w, "catching up: %s (what follows may be behind the log)\n", st.Reason)
	}
	fmt.Fprintf(w, "sites: %d   hosts: %d (%s)   vms: %d\n", st.Sites, st.Hosts.Total,
		hostCounts(st.Hosts.Reachable, st.Hosts.Unknown, st.Hosts.Unreachable), st.VMs.Total)
	fmt.Fprintf(w, "vms by state:  %s\n", counts(st.VMs.ByState))
	fmt.Fprintf(w, "vms by health: %s\n", counts(st.VMs.ByHealth))
	fmt.Fprintf(w, "jobs:          %s\n", counts(st.Jobs))
	for _, s := range []struct {
		title, part string
		cols        []string
	}{{"SITES", "sites", []string{"name", "hosts", "clouds"}}, {"HOSTS", "hosts", hostColumns},
		{"VMS", "vms", []string{"name", "host", "protection_state", "health", "active_site", "rpo_seconds"}}} {
		fmt.Fprintf(w, "\n%s\n", s.title)
		if err := renderList(s.cols...)(w, parts[s.part]); err != nil {
			return err
		}
	}
	return nil
}

// hostCounts prints the hosts by reachability, unknown only when some are
// ("2 reachable, 0 unreachable", "1 reachable, 1 unknown, 0 unreachable").
func hostCounts(reachable, unknown, unreachable int) string {
	if unknown == 0 {
		return fmt.Sprintf("%d reachable, %d unreachable", reachable, unreachable)
	}
	return fmt.Sprintf("%d reachable, %d unknown, %d unreachable", reachable, unknown, unreachable)
}

// counts prints a count map as "A 2, B 1", sorted by name.
func counts(m map[string]int) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// runEvents prints an aggregate's history (the events query) or, with
// --follow, every event appended from now on.
func runEvents(o opOptions, req map[string]any, stdout io.Writer) error {
	follow, _ := req[followKey].(bool)
	count, _ := req[countKey].(int)
	delete(req, followKey)
	delete(req, countKey)
	if follow {
		return followEvents(o, req, count, stdout)
	}
	nc, err := opConnect(o)
	if err != nil {
		return err
	}
	defer nc.Close()
	raw, err := request(nc, o, "sr.q.events", req)
	if err != nil {
		return err
	}
	if o.JSON {
		return printJSON(stdout, raw)
	}
	return renderList("seq", "at", "kind", "id", "type", "command_id", "data")(stdout, raw)
}

// followEvents subscribes to sr.evt.<kind>.<id>.> and prints each event
// until interrupted or count events were printed.
func followEvents(o opOptions, req map[string]any, count int, stdout io.Writer) error {
	subject, err := followSubject(req)
	if err != nil {
		return err
	}
	nc, err := opConnect(o)
	if err != nil {
		return err
	}
	defer nc.Close()
	closed := nc.StatusChanged(nats.CLOSED) // a refused subscription closes nc
	msgs := make(chan *nats.Msg, 1024)
	sub, err := nc.ChanSubscribe(subject, msgs)
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		return followClosed(nc, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for n := 0; count == 0 || n < count; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-closed:
			return followClosed(nc, nats.ErrConnectionClosed)
		case msg := <-msgs:
			if err := printEvent(stdout, msg, o.JSON); err != nil {
				return err
			}
		}
	}
	return nil
}

// followClosed is why events --follow stopped early: a refusal of its
// subscription, or the connection's end.
func followClosed(nc *nats.Conn, err error) error {
	if denied := permissionDenied(nc, err); denied != nil {
		return denied
	}
	return err
}

func followSubject(req map[string]any) (string, error) {
	kind, id := "*", "*"
	if k, ok := req["kind"].(string); ok {
		kind = k
	}
	if i, ok := req["id"].(string); ok {
		id = i
	}
	if _, ok := req["limit"]; ok {
		return "", usagef("--limit does not go with --follow (use --count)")
	}
	for _, t := range []string{kind, id} {
		if t != "*" && events.ValidateToken("kind/id", t) != nil {
			return "", usagef("%q is not a subject token", t)
		}
	}
	if kind == "*" && id == "*" {
		return events.SubjectPrefix + ".>", nil
	}
	return fmt.Sprintf("%s.%s.%s.>", events.SubjectPrefix, kind, id), nil
}

// printEvent prints one event message: its JSON line, or a readable line.
func printEvent(w io.Writer, msg *nats.Msg, asJSON bool) error {
	if asJSON {
		_, err := fmt.Fprintf(w, "{\"subject\":%q,\"event\":%s}\n", msg.Subject, msg.Data)
		return err
	}
	agg, typ, err := events.ParseSubject(msg.Subject)
	if err != nil {
		return err
	}
	var env events.Envelope
	if err := json.Unmarshal(msg.Data, &env); err != nil {
		return fmt.Errorf("event %s: %w", msg.Subject, err)
	}
	_, err = fmt.Fprintf(w, "%s  %-8s %-12s %-30s %s\n", env.At.Format("2006-01-02T15:04:05.000Z07:00"), agg.Kind, agg.ID, typ, env.Data)
	return err
}
