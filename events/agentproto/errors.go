package agentproto

import (
	"fmt"

	"github.com/siterecovery/siterecovery/events"
)

// ErrNotReportSubject means a subject is not sr.cmd.agent.<host>.<verb>. It
// wraps events.ErrInvalidArgument, so a service answers it invalid_argument.
var ErrNotReportSubject = fmt.Errorf("not an agent report subject %s.<host>.<verb>: %w", ReportPrefix, events.ErrInvalidArgument)
