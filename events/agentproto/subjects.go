package agentproto

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/siterecovery/siterecovery/events"
)

// ReportPrefix is the prefix of the agents' reports:
// sr.cmd.agent.<host>.<verb>.
const ReportPrefix = "sr.cmd.agent"

// ReportSubject is the subject host sends a report of verb on.
func ReportSubject(host, verb string) string { return ReportPrefix + "." + host + "." + verb }

// ReportFilter matches the reports of verb from every host: the subject a
// control plane serves verb on.
func ReportFilter(verb string) string { return ReportSubject("*", verb) }

// ParseReportSubject splits sr.cmd.agent.<host>.<verb>. A subject of another
// shape is ErrNotReportSubject; a host that is not a subject token is an
// events.ErrInvalidToken.
func ParseReportSubject(subject string) (host, verb string, err error) {
	rest, ok := strings.CutPrefix(subject, ReportPrefix+".")
	host, verb, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return "", "", fmt.Errorf("subject %q: %w", subject, ErrNotReportSubject)
	}
	if err := events.ValidateToken("host", host); err != nil {
		return "", "", err
	}
	return host, verb, nil
}

// VerifySubject is the subject a VM's source agent answers verify requests
// on: sr.agent.<host>.verify.<vm>.
func VerifySubject(host, vm string) string { return "sr.agent." + host + ".verify." + vm }

// LeavesSubject is the subject a VM's recovery host answers hash tree
// leaves requests on: sr.agent.<host>.leaves.<vm>.
func LeavesSubject(host, vm string) string { return "sr.agent." + host + ".leaves." + vm }

// The delta streams: SR_DELTA_<target_site> holds
// sr.delta.<target_site>.<source_host>.<vm>.<epoch>, a VM's batches.

// DeltaStream is the name of the delta stream of a target site.
func DeltaStream(site string) string { return "SR_DELTA_" + site }

// DeltaSubject is the subject of a VM's batches at an epoch.
func DeltaSubject(site, sourceHost, vm string, epoch uint64) string {
	return "sr.delta." + site + "." + sourceHost + "." + vm + "." + strconv.FormatUint(epoch, 10)
}

// DeltaStreamSubjects matches every batch the delta stream of site holds.
func DeltaStreamSubjects(site string) string { return "sr.delta." + site + ".>" }

// DeltaFilter matches every batch of vm, from any source host, any epoch.
func DeltaFilter(site, vm string) string { return "sr.delta." + site + ".*." + vm + ".*" }

// DeltaConsumer is the durable consumer name of vm's batches on its
// target site's delta stream.
func DeltaConsumer(vm string) string { return "sr-apply-" + vm }

// AckSubject is where a recovery host tells the source host that a cycle
// of vm is applied: sr.ack.<source_host>.<vm>, core NATS.
func AckSubject(sourceHost, vm string) string { return "sr.ack." + sourceHost + "." + vm }
