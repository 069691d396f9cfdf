package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
)

// automationColumns are the columns of automation ls.
var automationColumns = []string{"name", "on", "vm", "exec", "timeout", "last_run"}

// automationCommands are automation add, ls and rm: rules that run a
// command for every event of a type (sr.cmd.automation.*, sr.q.automations).
func automationCommands() []opCommand {
	return []opCommand{
		{noun: "automation", verb: "add", args: []string{"name"}, subject: "sr.cmd.automation.add", flags: []flagSpec{
			must(flagSpec{"on", "on", flagString, "event type that triggers the rule (failover_completed, ...)", false}),
			{"vm", "vm", flagString, "only the events of this VM", false},
			must(flagSpec{"exec", "exec", flagString, "shell command (sh -c); the event's JSON on stdin, SR_EVENT_TYPE, SR_VM, SR_EVENT_SEQ, SR_RULE in its environment", false})},
			extra: ruleTimeoutFlag, more: "[--timeout D]"},
		{noun: "automation", verb: "ls", subject: "sr.q.automations", query: true, render: renderAutomations},
		{noun: "automation", verb: "rm", args: []string{"name"}, subject: "sr.cmd.automation.remove"},
	}
}

// automationRow is a rule as sr.q.automations answers it.
type automationRow struct {
	Name    string `json:"name"`
	On      string `json:"on"`
	VM      string `json:"vm"`
	Exec    string `json:"exec"`
	Timeout string `json:"timeout"`
	LastRun *struct {
		EventSeq uint64 `json:"event_seq"`
		ExitCode int    `json:"exit_code"`
		Error    string `json:"error"`
	} `json:"last_run"`
}

// renderAutomations prints the rules as a table, the last run as
// "event SEQ: exit CODE[: ERROR]".
func renderAutomations(w io.Writer, raw []byte) error {
	var rules []automationRow
	if err := json.Unmarshal(raw, &rules); err != nil {
		return fmt.Errorf("reply is not a list of rules: %w", err)
	}
	if len(rules) == 0 {
		_, err := fmt.Fprintln(w, "(none)")
		return err
	}
	rows := make([]map[string]any, len(rules))
	for i, r := range rules {
		last := "never"
		if r.LastRun != nil {
			last = fmt.Sprintf("event %d: exit %d", r.LastRun.EventSeq, r.LastRun.ExitCode)
			if r.LastRun.Error != "" {
				last += ": " + r.LastRun.Error
			}
		}
		rows[i] = map[string]any{"name": r.Name, "on": r.On, "vm": r.VM, "exec": r.Exec, "timeout": r.Timeout, "last_run": last}
	}
	return table(w, automationColumns, rows)
}

// ruleTimeoutFlag makes the common --timeout, when given, the rule's
// timeout too (default 60s, at most 1h): every command already has
// --timeout, the wait for the reply, which a rule's timeout bounds as well.
func ruleTimeoutFlag(fs *flag.FlagSet) func(map[string]any) error {
	return func(req map[string]any) error {
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "timeout" {
				req["timeout"] = f.Value.String()
			}
		})
		return nil
	}
}
