package handlers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/siterecovery/siterecovery/events"
)

// maxScriptOutput bounds the script output kept for an error message.
const maxScriptOutput = 4 << 10

// script takes a group's script one step: nothing when it ended, else
// waiting is true; the first process manager to append its
// plan_action_started runs it, in the background.
func (p *PM) script(ctx context.Context, name string, run planRun, key actionKey, script string, timeout time.Duration) (waiting bool, err error) {
	if _, ok := run.done[key]; ok {
		return false, nil
	}
	if run.started[key] {
		return true, nil
	}
	job := run.plan.Job
	step := fmt.Sprintf("%s%d", key.Action, key.Group)
	if timeout <= 0 {
		timeout = p.cfg.ScriptTimeout
	}
	claim := events.PlanActionStartedData{Job: job, Group: key.Group, Action: key.Action, Timeout: events.Duration(timeout)}
	claimed, err := p.appendPlanOnce(ctx, name, job, run.cmd(step), claim)
	if err != nil || !claimed {
		return true, err
	}
	sctx := p.scriptContext(ctx, job)
	env := []string{"SR_PLAN=" + name, "SR_GROUP=" + strconv.Itoa(key.Group+1), "SR_OPERATION=" + run.op, "SR_JOB=" + job, "SR_ACTION=" + key.Action}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		errText := ""
		if err := runScript(sctx, script, env, timeout); err != nil {
			errText = err.Error()
		}
		done := events.PlanActionCompletedData{Job: job, Group: key.Group, Action: key.Action, Error: errText}
		if _, err := p.appendPlanOnce(ctx, name, job, run.cmd(step+"-done"), done); err != nil && ctx.Err() == nil {
			p.logger.Error().Err(err).Str("plan", name).Str("job", job).Msg("plan script result not recorded")
		}
	}()
	return true, nil
}

// scriptContext is ctx, cancelled too when the job is cancelled.
func (p *PM) scriptContext(ctx context.Context, job string) context.Context {
	p.mu.Lock()
	defer p.mu.Unlock()
	sctx, cancel := context.WithCancel(ctx)
	if prev := p.scripts[job]; prev != nil {
		p.scripts[job] = func() { prev(); cancel() }
	} else {
		p.scripts[job] = cancel
	}
	return sctx
}

// runScript runs script with sh -c in its own process group, killed whole
// at the timeout or when ctx ends. A non-zero exit is an error naming the
// status and the end of the output.
func runScript(ctx context.Context, script string, env []string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	switch {
	case err == nil:
		return nil
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("script timed out after %s", timeout)
	case ctx.Err() != nil:
		return fmt.Errorf("script stopped: %w", ctx.Err())
	}
	tail := strings.TrimSpace(out.String())
	if len(tail) > maxScriptOutput {
		tail = tail[len(tail)-maxScriptOutput:]
	}
	if tail == "" {
		return fmt.Errorf("script: %w", err)
	}
	return fmt.Errorf("script: %w: %s", err, tail)
}
