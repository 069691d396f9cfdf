package hostsync

import (
	"context"
	"errors"

	"github.com/rs/zerolog"
)

// reportNow sends a report unless the same key was sent within
// reportRetry, and says whether the control plane accepted it.
func (c *vmCtl) reportNow(ctx context.Context, key, verb string, body any) bool {
	if !c.due("report:"+key, reportRetry) {
		return false
	}
	err := c.a.rep.report(ctx, verb, body)
	if err == nil {
		return true
	}
	if ctx.Err() == nil {
		var re *ReportError
		lvl := zerolog.DebugLevel
		if errors.As(err, &re) {
			lvl = zerolog.WarnLevel
		}
		c.logger.WithLevel(lvl).Err(err).Str("verb", verb).Msg("report")
	}
	return false
}
