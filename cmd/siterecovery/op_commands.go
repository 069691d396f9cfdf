package main

import (
	"flag"
	"io"
	"strconv"
	"strings"
)

// opCommand is one operator command: CLI words, positional arguments (the
// request fields they fill), extra flags, the subject it sends to and how
// its reply is printed for people.
type opCommand struct {
	noun, verb string
	args       []string
	subject    string
	query      bool
	flags      []flagSpec
	// extra defines flags that need more than a flagSpec and returns what
	// fills the request from them after parsing.
	extra func(fs *flag.FlagSet) func(req map[string]any) error
	// more is the usage of the extra flags.
	more   string
	render func(w io.Writer, raw []byte) error
	// custom runs instead of one request (status, events --follow).
	custom func(o opOptions, req map[string]any, stdout io.Writer) error
}

// flagKind says how a flag's value goes into the request.
type flagKind int

const (
	flagString flagKind = iota // the string
	flagBool                   // true/false
	flagList                   // repeatable: a list
	flagCSV                    // repeatable, comma-separated: a list
	flagInt                    // a number
)

// flagSpec is a flag that sets one request field when given.
type flagSpec struct {
	name, field string
	kind        flagKind
	usage       string
	required    bool
}

// must marks f required.
func must(f flagSpec) flagSpec { f.required = true; return f }

func (c *opCommand) name() string {
	if c.verb == "" {
		return c.noun
	}
	return c.noun + " " + c.verb
}

func (c *opCommand) usage() string {
	parts := []string{c.name()}
	for _, a := range c.args {
		parts = append(parts, strings.ToUpper(a))
	}
	for _, f := range c.flags {
		arg := "--" + f.name
		if f.kind != flagBool {
			arg += " " + strings.ToUpper(strings.ReplaceAll(f.field, "_", "-"))
		}
		if !f.required {
			arg = "[" + arg + "]"
		}
		parts = append(parts, arg)
	}
	if c.more != "" {
		parts = append(parts, c.more)
	}
	if c.waits() {
		parts = append(parts, "[--wait [--wait-timeout D]]")
	}
	return strings.Join(parts, " ")
}

// run parses args, sends the request and prints the reply.
func (c *opCommand) run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("siterecovery "+c.name(), flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o opOptions
	commonFlags(fs, &o, !c.query)
	if c.waits() {
		waitFlags(fs, &o)
	}
	values := defineFlags(fs, c.flags)
	var fill func(map[string]any) error
	if c.extra != nil {
		fill = c.extra(fs)
	}
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != len(c.args) {
		return usagef("%s takes %d argument(s) (%s), got %d", c.name(), len(c.args), strings.ToUpper(strings.Join(c.args, " ")), len(pos))
	}
	req := map[string]any{}
	for i, a := range c.args {
		req[a] = pos[i]
	}
	if err := fillFlags(fs, c.flags, values, req); err != nil {
		return err
	}
	if fill != nil {
		if err := fill(req); err != nil {
			return err
		}
	}
	if o.CommandID == "" && !c.query {
		o.CommandID = newCommandID() // one id for every resend (op_request.go)
	}
	if o.CommandID != "" {
		req["command_id"] = o.CommandID
	}
	if o.AfterSeq != 0 {
		req["after_seq"] = o.AfterSeq
	}
	if c.custom != nil {
		return c.custom(o, req, stdout)
	}
	return c.send(o, req, stdout)
}

func (c *opCommand) send(o opOptions, req map[string]any, stdout io.Writer) error {
	nc, err := opConnect(o)
	if err != nil {
		return err
	}
	defer nc.Close()
	raw, err := request(nc, o, c.subject, req)
	if err != nil {
		return err
	}
	if err := c.print(o, raw, stdout); err != nil || !o.Wait {
		return err
	}
	return waitJob(nc, o, raw, stdout)
}

func (c *opCommand) print(o opOptions, raw []byte, stdout io.Writer) error {
	if o.JSON {
		return printJSON(stdout, raw)
	}
	if c.render != nil {
		return c.render(stdout, raw)
	}
	return renderResult(stdout, c.name(), raw)
}

// defineFlags defines specs on fs and returns their value holders.
func defineFlags(fs *flag.FlagSet, specs []flagSpec) map[string]any {
	values := map[string]any{}
	for _, f := range specs {
		switch f.kind {
		case flagBool:
			values[f.name] = fs.Bool(f.name, false, f.usage)
		case flagList, flagCSV:
			l := &listFlag{}
			fs.Var(l, f.name, f.usage)
			values[f.name] = l
		case flagInt:
			values[f.name] = fs.Int(f.name, 0, f.usage)
		default:
			values[f.name] = fs.String(f.name, "", f.usage)
		}
	}
	return values
}

// fillFlags sets the request field of every flag given on the command line.
func fillFlags(fs *flag.FlagSet, specs []flagSpec, values map[string]any, req map[string]any) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, f := range specs {
		if !set[f.name] {
			if f.required {
				return usagef("--%s is required", f.name)
			}
			continue
		}
		switch v := values[f.name].(type) {
		case *bool:
			req[f.field] = *v
		case *int:
			req[f.field] = *v
		case *string:
			req[f.field] = *v
		case *listFlag:
			if f.kind == flagCSV {
				req[f.field] = splitList(*v)
			} else {
				req[f.field] = []string(*v)
			}
		}
	}
	return nil
}

var policyFlags = []flagSpec{
	{"copy-frequency", "copy_frequency", flagString, "how often changes ship (at least 1s; 30s, 5m, 15m)", false},
	{"retention", "retention", flagString, "how long recovery points are kept (0 to 720h)", false},
	{"app-consistent-every", "app_consistent_every", flagString, "interval of app-consistent points (below the retention; 0: none)", false},
	{"compression", "compression", flagBool, "compress deltas", false},
	{"rpo-threshold", "rpo_threshold", flagString, "RPO above which health turns Warning", false},
	{"start-at", "start_at", flagString, "start initial replication at this RFC 3339 time", false},
	{"delete-replica-on-disable", "delete_replica_on_disable", flagBool, "delete the replica when protection is disabled", false},
	{"quiesce-command", "quiesce_command", flagString, "command run on the source before an app-consistent point", false},
	{"thaw-command", "thaw_command", flagString, "command run on the source after it", false},
}

var (
	flagRecoveryPoint = flagSpec{"recovery-point", "recovery_point", flagString, "recovery point ID or latest", false}
	flagShutdown      = flagSpec{"shutdown-source", "shutdown_source", flagBool, "try to shut the source VM down first", false}
	flagTestNetwork   = flagSpec{"network", "network", flagString, "network of the test VM", false}
)

// vmVerbs are the VM operations (CLI verb → flags).
var vmVerbs = []struct {
	verb  string
	flags []flagSpec
}{
	{"enable", nil}, {"disable", nil}, {"pause", nil}, {"resume", nil}, {"resync", nil},
	{"test-failover", []flagSpec{flagTestNetwork, flagRecoveryPoint}}, {"test-cleanup", nil},
	{"planned-failover", nil}, {"unplanned-failover", []flagSpec{flagRecoveryPoint, flagShutdown}},
	{"change-recovery-point", []flagSpec{must(flagRecoveryPoint)}}, {"commit", nil}, {"cancel-failover", nil}, {"reverse", nil},
}

// planVerbs are the plan verbs that name a plan and take no groups.
var planVerbs = []struct {
	verb  string
	flags []flagSpec
}{
	{"delete", nil}, {"test-failover", []flagSpec{flagRecoveryPoint}}, {"test-cleanup", nil},
	{"planned-failover", nil}, {"unplanned-failover", []flagSpec{flagRecoveryPoint}},
	{"commit", nil}, {"reverse", nil}, {"resume", nil}, {"cancel", nil},
}

// subjectVerb turns a CLI verb into a subject token.
func subjectVerb(verb string) string { return strings.ReplaceAll(verb, "-", "_") }

// opCommands is every operator command.
var opCommands = buildCommands()

func buildCommands() []opCommand {
	cmds := []opCommand{
		{noun: "site", verb: "register", args: []string{"name"}, subject: "sr.cmd.site.register"},
		{noun: "site", verb: "unregister", args: []string{"name"}, subject: "sr.cmd.site.unregister"},
		{noun: "site", verb: "ls", subject: "sr.q.sites", query: true, render: renderList("name", "hosts", "clouds")},
		{noun: "host", verb: "register", args: []string{"name"}, subject: "sr.cmd.host.register",
			flags: []flagSpec{must(flagSpec{"site", "site", flagString, "the host's site", false})}},
		{noun: "host", verb: "unregister", args: []string{"name"}, subject: "sr.cmd.host.unregister"},
		{noun: "host", verb: "ls", subject: "sr.q.hosts", query: true, render: renderList(hostColumns...)},
		{noun: "cloud", verb: "create", args: []string{"name"}, subject: "sr.cmd.cloud.create",
			flags: []flagSpec{must(flagSpec{"site", "site", flagString, "the cloud's site", false}), {"hosts", "hosts", flagCSV, "hosts of the site (comma-separated, repeatable)", false}}},
		{noun: "cloud", verb: "add-host", args: []string{"cloud", "host"}, subject: "sr.cmd.cloud.add_host"},
		{noun: "cloud", verb: "ls", subject: "sr.q.clouds", query: true, render: renderList("name", "site", "hosts", "pairing", "role")},
		{noun: "policy", verb: "create", args: []string{"name"}, subject: "sr.cmd.policy.create", flags: policyFlags},
		{noun: "policy", verb: "update", args: []string{"name"}, subject: "sr.cmd.policy.update", flags: policyFlags},
		{noun: "policy", verb: "delete", args: []string{"name"}, subject: "sr.cmd.policy.delete"},
		{noun: "policy", verb: "ls", subject: "sr.q.policies", query: true,
			render: renderList("name", "copy_frequency", "retention", "app_consistent_every", "compression", "rpo_threshold")},
		{noun: "pairing", verb: "create", subject: "sr.cmd.pairing.create", flags: []flagSpec{
			must(flagSpec{"source", "source", flagString, "source cloud", false}),
			must(flagSpec{"target", "target", flagString, "target cloud (of the other site)", false}),
			must(flagSpec{"policy", "policy", flagString, "replication policy", false}),
			{"name", "name", flagString, "pairing name (default SOURCE-TARGET)", false}}},
		{noun: "pairing", verb: "delete", args: []string{"name"}, subject: "sr.cmd.pairing.delete"},
		{noun: "pairing", verb: "ls", subject: "sr.q.pairings", query: true,
			render: renderList("name", "source_cloud", "target_cloud", "policy", "source_site", "target_site")},
		{noun: "netmap", verb: "create", args: []string{"name"}, subject: "sr.cmd.netmap.create", flags: []flagSpec{
			must(flagSpec{"source-network", "source_network", flagString, "network at the source site", false}),
			must(flagSpec{"target-network", "target_network", flagString, "network it maps to at the target site", false})}},
		{noun: "netmap", verb: "delete", args: []string{"name"}, subject: "sr.cmd.netmap.delete"},
		{noun: "netmap", verb: "ls", subject: "sr.q.netmaps", query: true, render: renderList("name", "source_network", "target_network")},
		{noun: "vm", verb: "create", args: []string{"name"}, subject: "sr.cmd.vm.create", flags: []flagSpec{
			must(flagSpec{"host", "host", flagString, "host the VM runs on (its cloud is the host's)", false}),
			must(flagSpec{"disk", "disk", flagList, "disk size, e.g. 4GiB (repeatable)", false}),
			{"network", "networks", flagList, "network of a NIC (repeatable)", false}}},
		{noun: "vm", verb: "show", args: []string{"vm"}, subject: "sr.q.vm", query: true, render: renderVM},
		{noun: "vm", verb: "ls", subject: "sr.q.vms", query: true, render: renderList(vmColumns...)},
		{noun: "plan", verb: "create", args: []string{"name"}, subject: "sr.cmd.plan.create", extra: planGroupFlags, more: groupUsage},
		{noun: "plan", verb: "update", args: []string{"plan"}, subject: "sr.cmd.plan.update", extra: planGroupFlags, more: groupUsage},
		{noun: "plan", verb: "show", args: []string{"plan"}, subject: "sr.q.plan", query: true, render: renderObject},
		{noun: "plan", verb: "ls", subject: "sr.q.plans", query: true, render: renderList("name", "state", "operation", "job", "group")},
		{noun: "status", subject: "sr.q.status", query: true, custom: runStatus},
		{noun: "sites", subject: "sr.q.sites", query: true, render: renderList("name", "hosts", "clouds")},
		{noun: "hosts", subject: "sr.q.hosts", query: true, render: renderList(hostColumns...)},
		{noun: "vms", subject: "sr.q.vms", query: true, render: renderList(vmColumns...)},
		{noun: "jobs", subject: "sr.q.jobs", query: true, render: renderList(jobColumns...), flags: []flagSpec{
			{"vm", "vm", flagString, "only the jobs of this VM", false}, {"limit", "limit", flagInt, "at most this many jobs", false}}},
		{noun: "job", verb: "show", args: []string{"job"}, subject: "sr.q.job", query: true, render: renderObject},
		{noun: "events", subject: "sr.q.events", query: true, extra: eventsFlags, custom: runEvents, more: "[--follow [--count N]]", flags: []flagSpec{
			{"kind", "kind", flagString, "aggregate kind (vm, site, ...)", false}, {"id", "id", flagString, "aggregate id", false},
			{"limit", "limit", flagInt, "at most this many events", false}}},
	}
	cmds = append(cmds, automationCommands()...)
	cmds = append(cmds, verifyCommands()...) // op_verify.go
	for _, v := range vmVerbs {
		cmds = append(cmds, opCommand{noun: "vm", verb: v.verb, args: []string{"vm"}, subject: "sr.cmd.vm." + subjectVerb(v.verb), flags: v.flags})
	}
	for _, v := range planVerbs {
		cmds = append(cmds, opCommand{noun: "plan", verb: v.verb, args: []string{"plan"}, subject: "sr.cmd.plan." + subjectVerb(v.verb), flags: v.flags})
	}
	return cmds
}

const groupUsage = "--group VM,VM... [--group ...] [--pre-script G:CMD] [--post-script G:CMD] [--manual-action-after G:TEXT]"

// planGroupFlags defines --group, --pre-script, --post-script and
// --manual-action-after, and fills "groups".
func planGroupFlags(fs *flag.FlagSet) func(map[string]any) error {
	var groups, pre, post, manual listFlag
	fs.Var(&groups, "group", "VMs of a group, comma-separated; groups fail over in order (repeatable)")
	fs.Var(&pre, "pre-script", "G:CMD: run CMD before group G (1-based)")
	fs.Var(&post, "post-script", "G:CMD: run CMD after group G")
	fs.Var(&manual, "manual-action-after", "G:TEXT: pause after group G until plan resume")
	return func(req map[string]any) error {
		if len(groups) == 0 {
			return usagef("at least one --group is required")
		}
		gs := make([]map[string]any, len(groups))
		for i, g := range groups {
			gs[i] = map[string]any{"vms": splitList([]string{g})}
		}
		for _, a := range []struct {
			vals  listFlag
			field string
		}{{pre, "pre_script"}, {post, "post_script"}, {manual, "manual_action"}} {
			for _, v := range a.vals {
				g, text, err := groupValue(v, len(gs))
				if err != nil {
					return err
				}
				gs[g][a.field] = text
			}
		}
		req["groups"] = gs
		return nil
	}
}

// groupValue parses "G:TEXT" with G a 1-based group number.
func groupValue(v string, n int) (int, string, error) {
	g, text, ok := strings.Cut(v, ":")
	i, err := strconv.Atoi(g)
	if !ok || err != nil || i < 1 || i > n || text == "" {
		return 0, "", usagef("%q: want G:TEXT with G a group number from 1 to %d", v, n)
	}
	return i - 1, text, nil
}

// eventsFlags defines --follow and --count.
func eventsFlags(fs *flag.FlagSet) func(map[string]any) error {
	follow := fs.Bool("follow", false, "print events as they are appended (sr.evt.>) until interrupted")
	count := fs.Int("count", 0, "with --follow: stop after this many events")
	return func(req map[string]any) error {
		if *follow {
			req[followKey] = true
			req[countKey] = *count
		} else if *count != 0 {
			return usagef("--count goes with --follow")
		}
		return nil
	}
}

// Keys runEvents takes from the request map (never sent).
const (
	followKey = "\x00follow"
	countKey  = "\x00count"
)
