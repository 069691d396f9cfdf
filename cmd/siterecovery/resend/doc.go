// Package resend sends a request to the siterecovery micro service again
// while no control plane answers it: no responders, no reply in time, or an
// "unavailable" error reply. Right after a site is lost the survivors take
// a few seconds over (the event stream electing a leader:
// docs/operations.md, "Losing a site"); the CLI and the HTTP API ride over
// that with Request instead of failing the first command of a disaster.
//
// Every send goes to one inbox, so the first reply to any of them ends the
// request. A resend carries the same body: a command keeps its command_id
// and the service applies it once however often it comes (an append that
// landed before its reply was lost is answered as a duplicate). The caller
// gives a command without a command_id one (NewCommandID) before the first
// send.
package resend
