package handlers

import (
	"fmt"
	"strings"
	"time"

	"github.com/siterecovery/siterecovery/events"
)

// Bounds of an automation rule's timeout.
const (
	DefaultAutomationTimeout = 60 * time.Second
	MaxAutomationTimeout     = time.Hour
)

// automationAddRequest is sr.cmd.automation.add.
type automationAddRequest struct {
	common
	Name    string           `json:"name"`
	On      events.Type      `json:"on"`
	VM      string           `json:"vm,omitempty"`
	Exec    string           `json:"exec"`
	Timeout *events.Duration `json:"timeout,omitempty"`
}

// validate checks the request alone: a rule name, an event type of the
// catalog that is not an automation event (a rule on automation_executed
// would trigger itself), a VM name if any, a command and a timeout within
// (0, MaxAutomationTimeout].
func (r automationAddRequest) validate() error {
	if err := token("name", r.Name); err != nil {
		return err
	}
	if !r.On.Known() {
		return fmt.Errorf("on %q is not an event type of the catalog: %w", r.On, events.ErrInvalidArgument)
	}
	if r.On.Kind() == events.KindAutomation {
		return fmt.Errorf("on %q: a rule may not run on automation events: %w", r.On, events.ErrInvalidArgument)
	}
	if err := optionalToken("vm", r.VM); err != nil {
		return err
	}
	if strings.TrimSpace(r.Exec) == "" {
		return fmt.Errorf("exec is required: %w", events.ErrInvalidArgument)
	}
	if r.Timeout != nil && (r.Timeout.D() <= 0 || r.Timeout.D() > MaxAutomationTimeout) {
		return fmt.Errorf("timeout %s is not within 0 (excluded) and %s: %w", r.Timeout.D(), MaxAutomationTimeout, events.ErrInvalidArgument)
	}
	return nil
}

// rule is the rule the request adds, with the default timeout.
func (r automationAddRequest) rule() events.AutomationAddedData {
	timeout := events.Duration(DefaultAutomationTimeout)
	if r.Timeout != nil {
		timeout = *r.Timeout
	}
	return events.AutomationAddedData{Name: r.Name, On: r.On, VM: r.VM, Exec: r.Exec, Timeout: timeout}
}

func foldAutomation(recs []events.Record) events.Automation {
	var a events.Automation
	for _, r := range recs {
		a.Apply(r)
	}
	return a
}

func decideAutomationAdd(a events.Automation, r automationAddRequest) ([]events.Data, error) {
	if a.Exists() {
		return nil, alreadyExists(events.KindAutomation, r.Name)
	}
	return []events.Data{r.rule()}, nil
}

func decideAutomationRemove(a events.Automation, name string) ([]events.Data, error) {
	if !a.Exists() {
		return nil, notFound(events.KindAutomation, name)
	}
	return []events.Data{events.AutomationRemovedData{Name: name}}, nil
}

// automationCommandID is the command id of the outcome of rule's run for
// the event at seq: a run recorded twice (a redelivery after a crash, two
// runners) appends once.
func automationCommandID(seq uint64) string { return fmt.Sprintf("auto-%d", seq) }

// executedFor finds the outcome of the rule's run for the event at seq in
// the rule's history.
func executedFor(recs []events.Record, seq uint64) (events.AutomationExecutedData, bool) {
	for _, r := range recs {
		if d, ok := r.Data.(events.AutomationExecutedData); ok && d.EventSeq == seq {
			return d, true
		}
	}
	return events.AutomationExecutedData{}, false
}

// ruleMatches reports whether rule runs for rec: same type and, when the
// rule names a VM, an event of that VM.
func ruleMatches(rule events.AutomationAddedData, rec events.Record) bool {
	if rule.On != rec.Type() {
		return false
	}
	return rule.VM == "" || (rec.Aggregate.Kind == events.KindVM && rec.Aggregate.ID == rule.VM)
}
