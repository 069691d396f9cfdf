package events

// Recovery plans and automation rules.

// PlanGroup is one group of a recovery plan: its VMs fail over in parallel,
// between an optional pre script, post script and manual action.
type PlanGroup struct {
	VMs          []string `json:"vms"`
	PreScript    string   `json:"pre_script,omitempty"`
	PostScript   string   `json:"post_script,omitempty"`
	ManualAction string   `json:"manual_action,omitempty"`
	// ScriptTimeout bounds each script (0: 600s).
	ScriptTimeout Duration `json:"script_timeout,omitempty"`
}

// PlanCreatedData: a recovery plan with ordered groups.
type PlanCreatedData struct {
	Name   string      `json:"name"`
	Groups []PlanGroup `json:"groups"`
}

// PlanUpdatedData: the plan's groups changed.
type PlanUpdatedData struct {
	Name   string      `json:"name"`
	Groups []PlanGroup `json:"groups"`
}

// PlanDeletedData: the plan was deleted.
type PlanDeletedData struct {
	Name string `json:"name"`
}

// PlanJobStartedData: an operation on the whole plan began (Job is its
// correlation id).
type PlanJobStartedData struct {
	Operation     string `json:"operation"`
	Job           string `json:"job"`
	RecoveryPoint string `json:"recovery_point,omitempty"`
}

// PlanGroupStartedData: the plan moved to group Group (0-based).
type PlanGroupStartedData struct {
	Job   string `json:"job"`
	Group int    `json:"group"`
}

// PlanActionStartedData: the control plane took on a script of a group (the
// first to append it runs it; Action is pre_script or post_script).
type PlanActionStartedData struct {
	Job    string `json:"job"`
	Group  int    `json:"group"`
	Action string `json:"action"`
	Target string `json:"target,omitempty"`
	// Timeout bounds the script (0: the control plane's default).
	Timeout Duration `json:"timeout,omitempty"`
}

// PlanActionCompletedData: a script, manual action or VM operation of a group
// ended.
type PlanActionCompletedData struct {
	Job    string `json:"job"`
	Group  int    `json:"group"`
	Action string `json:"action"`
	Target string `json:"target,omitempty"`
	Error  string `json:"error,omitempty"`
}

// PlanSuspendedData: the plan waits for a manual action (plan resume).
type PlanSuspendedData struct {
	Job   string `json:"job"`
	Group int    `json:"group"`
	Text  string `json:"text"`
}

// PlanResumedData: an operator confirmed the manual action.
type PlanResumedData struct {
	Job string `json:"job"`
}

// Job states, as ASR names them.
const (
	JobNotStarted = "NotStarted"
	JobInProgress = "InProgress"
	JobSucceeded  = "Succeeded"
	JobFailed     = "Failed"
	JobCancelled  = "Cancelled"
	JobSuspended  = "Suspended"
)

// PlanJobCompletedData: the plan operation ended in State.
type PlanJobCompletedData struct {
	Job    string   `json:"job"`
	State  string   `json:"state"`
	Errors []string `json:"errors,omitempty"`
}

// PlanJobCancelledData: an operator cancelled the plan operation.
type PlanJobCancelledData struct {
	Job string `json:"job"`
}

// AutomationAddedData: run Exec for every event of type On (and VM, if set).
type AutomationAddedData struct {
	Name    string   `json:"name"`
	On      Type     `json:"on"`
	VM      string   `json:"vm,omitempty"`
	Exec    string   `json:"exec"`
	Timeout Duration `json:"timeout,omitempty"`
}

// AutomationRemovedData: the rule was removed.
type AutomationRemovedData struct {
	Name string `json:"name"`
}

// AutomationExecutedData: the rule ran for the event at EventSeq.
type AutomationExecutedData struct {
	Name     string `json:"name"`
	EventSeq uint64 `json:"event_seq"`
	ExitCode int    `json:"exit_code"`
	Error    string `json:"error,omitempty"`
	Output   string `json:"output,omitempty"`
}

func (PlanCreatedData) EventType() Type         { return PlanCreated }
func (PlanUpdatedData) EventType() Type         { return PlanUpdated }
func (PlanDeletedData) EventType() Type         { return PlanDeleted }
func (PlanJobStartedData) EventType() Type      { return PlanJobStarted }
func (PlanGroupStartedData) EventType() Type    { return PlanGroupStarted }
func (PlanActionCompletedData) EventType() Type { return PlanActionCompleted }
func (PlanActionStartedData) EventType() Type   { return PlanActionStarted }
func (PlanSuspendedData) EventType() Type       { return PlanSuspended }
func (PlanResumedData) EventType() Type         { return PlanResumed }
func (PlanJobCompletedData) EventType() Type    { return PlanJobCompleted }
func (PlanJobCancelledData) EventType() Type    { return PlanJobCancelled }
func (AutomationAddedData) EventType() Type     { return AutomationAdded }
func (AutomationRemovedData) EventType() Type   { return AutomationRemoved }
func (AutomationExecutedData) EventType() Type  { return AutomationExecuted }
