package resend

import (
	"fmt"
	"time"
)

// Unanswered is the error of a request no control plane answered within its
// timeout: how many sends, over how long, and how the last one ended.
type Unanswered struct {
	Subject  string
	Attempts int
	Elapsed  time.Duration
	// Last is how the last send ended ("no responders", "no reply within
	// 8s", an unavailable reply's message).
	Last string
	// NoResponders is true when the last send found no responder at all.
	NoResponders bool
}

func (e *Unanswered) Error() string {
	msg := fmt.Sprintf("%s: no control plane answered: %d attempt(s) over %s, the last: %s", e.Subject, e.Attempts,
		e.Elapsed.Round(time.Millisecond), e.Last)
	if e.NoResponders {
		msg += " (is siterecovery serve running?)"
	}
	return msg
}
