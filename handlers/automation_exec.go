package handlers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/siterecovery/siterecovery/events"
)

// DefaultAutomationOutput bounds the output an automation_executed keeps
// (its last bytes).
const DefaultAutomationOutput = 4 << 10

// Environment variables of an automation command.
const (
	EnvEventType = "SR_EVENT_TYPE"
	EnvVM        = "SR_VM"
	EnvEventSeq  = "SR_EVENT_SEQ"
	EnvRule      = "SR_RULE"
)

// runAutomation runs rule.Exec with sh -c in its own process group, the
// event's envelope JSON on stdin, and returns the outcome: the exit code
// (-1 when it did not start, was killed at the timeout or stopped by ctx)
// and the last outputLimit bytes of stdout and stderr. stopped reports that
// ctx ended first: the outcome is then not the rule's to record.
func runAutomation(ctx context.Context, rule events.AutomationAddedData, rec events.Record, payload []byte, outputLimit int) (out events.AutomationExecutedData, stopped bool) {
	timeout := rule.Timeout.D()
	if timeout <= 0 {
		timeout = DefaultAutomationTimeout
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(rctx, "sh", "-c", rule.Exec)
	cmd.Env = append(os.Environ(), automationEnv(rule, rec)...)
	cmd.Stdin = bytes.NewReader(payload)
	tail := &tailBuffer{limit: outputLimit}
	cmd.Stdout, cmd.Stderr = tail, tail
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	out = events.AutomationExecutedData{Name: rule.Name, EventSeq: rec.Seq, Output: tail.String()}
	switch {
	case ctx.Err() != nil:
		return out, true
	case errors.Is(rctx.Err(), context.DeadlineExceeded):
		out.ExitCode, out.Error = -1, fmt.Sprintf("timed out after %s: process group killed", timeout)
	case err != nil:
		out.ExitCode, out.Error = exitCode(err), err.Error()
	}
	return out, false
}

func automationEnv(rule events.AutomationAddedData, rec events.Record) []string {
	env := []string{
		EnvEventType + "=" + string(rec.Type()),
		EnvEventSeq + "=" + strconv.FormatUint(rec.Seq, 10),
		EnvRule + "=" + rule.Name,
	}
	if rec.Aggregate.Kind == events.KindVM {
		env = append(env, EnvVM+"="+rec.Aggregate.ID)
	}
	return env
}

// exitCode is the process's exit status, -1 when it has none (it did not
// start, or a signal ended it).
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// tailBuffer keeps the last limit bytes written to it. exec.Cmd writes to
// it from one goroutine when Stdout and Stderr are the same writer.
type tailBuffer struct {
	limit int
	buf   []byte
	cut   bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.limit {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.limit:]...)
		t.cut = true
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	if t.cut {
		return "…" + string(t.buf)
	}
	return string(t.buf)
}
