package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// --wait: a long operation's command waits for its job, shows its steps as
// they come and fails (exit 1) with the job's errors.

// defaultWaitTimeout bounds --wait.
const defaultWaitTimeout = 30 * time.Minute

// waitPoll is how often --wait asks for the job.
const waitPoll = 250 * time.Millisecond

// longVerbs are the verbs whose reply names a job --wait can wait for.
var longVerbs = map[string][]string{
	"vm": {"enable", "disable", "resync", "test-failover", "test-cleanup", "planned-failover",
		"unplanned-failover", "commit", "cancel-failover", "reverse"},
	"plan": {"test-failover", "test-cleanup", "planned-failover", "unplanned-failover", "commit", "reverse"},
}

// waits reports whether c takes --wait.
func (c *opCommand) waits() bool { return slices.Contains(longVerbs[c.noun], c.verb) }

// waitFlags adds --wait and --wait-timeout.
func waitFlags(fs *flag.FlagSet, o *opOptions) {
	fs.BoolVar(&o.Wait, "wait", false, "wait for the operation's job to end; fail with its error")
	fs.DurationVar(&o.WaitTimeout, "wait-timeout", defaultWaitTimeout, "how long --wait waits")
}

// waitJob follows the job named in a command's reply until it ends.
func waitJob(nc *nats.Conn, o opOptions, reply []byte, stdout io.Writer) error {
	var res struct {
		Job string `json:"job"`
		Seq uint64 `json:"seq"`
	}
	if err := json.Unmarshal(reply, &res); err != nil || res.Job == "" {
		return &refusedError{Code: "unavailable", Message: "the reply names no job to wait for"}
	}
	w := jobWatch{out: stdout, quiet: o.JSON}
	deadline := time.Now().Add(o.WaitTimeout)
	var unanswered error
	for time.Now().Before(deadline) {
		raw, err := request(nc, o, "sr.q.job", map[string]any{"job": res.Job, "after_seq": res.Seq})
		var re *refusedError
		switch {
		case errors.As(err, &re) && re.Code == "not_found":
		case errors.As(err, &re) && re.Code == "unavailable":
			// The job query went unanswered for --timeout (a control plane
			// catching up after a site loss): the job goes on; ask again.
			unanswered = err
			w.unanswered(err)
		case err != nil:
			return err
		default:
			done, err := w.update(raw)
			if done || err != nil {
				return err
			}
		}
		time.Sleep(waitPoll)
	}
	msg := fmt.Sprintf("job %s did not end within %s", res.Job, o.WaitTimeout)
	if unanswered != nil {
		msg += "; the last query: " + unanswered.Error()
	}
	return &refusedError{Code: "unavailable", Message: msg}
}

// unanswered says that a job query went unanswered and --wait goes on
// asking.
func (w *jobWatch) unanswered(err error) {
	if !w.quiet {
		fmt.Fprintf(w.out, "waiting: %v; asking again\n", err)
	}
}

// waitedJob is what --wait reads of a job.
type waitedJob struct {
	ID     string   `json:"id"`
	State  string   `json:"state"`
	Errors []string `json:"errors"`
	Steps  []struct {
		Seq    uint64    `json:"seq"`
		Name   string    `json:"name"`
		Time   time.Time `json:"time"`
		State  string    `json:"state"`
		Detail string    `json:"detail"`
	} `json:"steps"`
}

// jobWatch prints a job's new steps and says when it ended.
type jobWatch struct {
	out       io.Writer
	quiet     bool
	lastSeq   uint64
	suspended bool
}

func (w *jobWatch) update(raw []byte) (bool, error) {
	var j waitedJob
	if err := json.Unmarshal(raw, &j); err != nil {
		return false, fmt.Errorf("job reply: %w", err)
	}
	w.progress(j)
	switch j.State {
	case "Succeeded":
		return true, w.final(raw, j)
	case "Failed", "Cancelled":
		if err := w.final(raw, j); err != nil {
			return true, err
		}
		msg := strings.Join(j.Errors, "; ")
		if msg == "" {
			msg = "job " + j.ID + " " + strings.ToLower(j.State)
		}
		return true, &refusedError{Code: "job_" + strings.ToLower(j.State), Message: msg}
	}
	return false, nil
}

func (w *jobWatch) progress(j waitedJob) {
	for _, s := range j.Steps {
		if s.Seq <= w.lastSeq {
			continue
		}
		w.lastSeq = s.Seq
		if !w.quiet {
			line := fmt.Sprintf("%s  %-30s %s", s.Time.Local().Format("15:04:05"), s.Name, s.State)
			if s.Detail != "" {
				line += "  " + s.Detail
			}
			fmt.Fprintln(w.out, line)
		}
	}
	if j.State == "Suspended" && !w.suspended && !w.quiet {
		fmt.Fprintf(w.out, "job %s is suspended: waiting for a manual action (siterecovery plan resume)\n", j.ID)
	}
	w.suspended = j.State == "Suspended"
}

func (w *jobWatch) final(raw []byte, j waitedJob) error {
	if w.quiet {
		return printJSON(w.out, raw)
	}
	_, err := fmt.Fprintf(w.out, "job %s %s\n", j.ID, j.State)
	return err
}
