package pki

import (
	"fmt"
	"path/filepath"
	"slices"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/siterecovery/siterecovery/events/jetstream"
)

// The NATS permissions of each role (docs/security.md).
// NATS wildcards match whole tokens only, so stream and consumer names are
// matched with "*" where they carry a site or VM name.

// logReadAPI are the JetStream API calls that follow and load the event
// log: stream info, direct gets, and the readers' own consumers on
// SR_EVENTS (ordered consumers, the nats CLI's stream pager, which acks
// what it shows); plus the stream names and list, which say no more than
// the info of each stream already does (`nats stream ls`, and the picker
// of a nats command given no stream).
var logReadAPI = []string{
	"$JS.API.INFO",
	"$JS.API.STREAM.NAMES",
	"$JS.API.STREAM.LIST",
	"$JS.API.STREAM.INFO.*",
	"$JS.API.DIRECT.GET." + jetstream.DefaultStream,
	"$JS.API.DIRECT.GET." + jetstream.DefaultStream + ".>",
	"$JS.API.STREAM.MSG.GET." + jetstream.DefaultStream,
	"$JS.API.CONSUMER.CREATE." + jetstream.DefaultStream + ".*.>",
	"$JS.API.CONSUMER.INFO." + jetstream.DefaultStream + ".*",
	"$JS.API.CONSUMER.DELETE." + jetstream.DefaultStream + ".*",
	"$JS.API.CONSUMER.MSG.NEXT." + jetstream.DefaultStream + ".*",
	"$JS.ACK." + jetstream.DefaultStream + ".*.>",
}

// logSubjects are the events as they are appended: the operator and the
// viewer may follow them with a plain subscription (events --follow, nats
// sub); hosts follow the log with an ordered consumer (hostUser).
const logSubjects = "sr.evt.>"

// denyAll are subjects no user but the control plane publishes to: the
// events themselves, the JetStream calls that change streams or read
// another's messages by a side door, and the automation runners' durable
// consumer (a deny wins over the allows that let readers make and use
// consumers of their own on SR_EVENTS).
var denyAll = append([]string{
	"sr.evt.>",
	"$JS.API.STREAM.CREATE.>", "$JS.API.STREAM.UPDATE.>", "$JS.API.STREAM.DELETE.>",
	"$JS.API.STREAM.MSG.DELETE.>", "$JS.API.STREAM.SNAPSHOT.>", "$JS.API.STREAM.RESTORE.>",
	"$JS.API.STREAM.PEER.>", "$JS.API.STREAM.LEADER.>", "$JS.API.META.>", "$JS.API.ACCOUNT.>",
	"$JS.API.CONSUMER.DURABLE.CREATE.>", "$JS.API.CONSUMER.PAUSE.>", "$JS.API.CONSUMER.UNPIN.>",
	"$JS.API.STREAM.PURGE." + jetstream.DefaultStream,
	"$SYS.>",
}, controlConsumer(AutomationConsumer)...)

// AutomationConsumer is the durable consumer the control plane's automation
// runners share on SR_EVENTS: handlers.AutomationConsumer, named here so
// that the permissions need not import the handlers (a test in package main
// holds the two together).
const AutomationConsumer = "sr-automation"

// controlConsumer denies every call that uses, changes or removes the
// control plane's durable consumer name on SR_EVENTS, and every ack of its
// messages (in both forms of the ack subject: $JS.ACK.<stream>.<consumer>...
// and $JS.ACK.<domain>.<account>.<stream>.<consumer>...). Its info stays
// readable (`nats consumer info SR_EVENTS sr-automation`: is automation
// behind?).
func controlConsumer(name string) []string {
	s, c := jetstream.DefaultStream, name
	return []string{
		"$JS.API.CONSUMER.CREATE." + s + "." + c,
		"$JS.API.CONSUMER.CREATE." + s + "." + c + ".>",
		"$JS.API.CONSUMER.DELETE." + s + "." + c,
		"$JS.API.CONSUMER.MSG.NEXT." + s + "." + c,
		"$JS.ACK." + s + "." + c + ".>",
		"$JS.ACK.*.*." + s + "." + c + ".>",
	}
}

// serviceDiscovery lets a user find the micro service (nats micro ls).
var serviceDiscovery = []string{"$SRV.PING", "$SRV.PING.>", "$SRV.INFO", "$SRV.INFO.>", "$SRV.STATS", "$SRV.STATS.>"}

// hostUser is the user of host h's certificate: its own delta subjects and
// reports, the delta streams' consumers (one per VM, named by the VM: the
// server cannot tell which host receives which VM), cycle acks, the
// hash-tree leaves other hosts ask it for during a resync (answered with
// allow_responses), and the log to follow with an ordered consumer. Not a
// plain subscription to sr.evt.>: an event arrives with the reply subject
// of the control plane's append, and allow_responses would let the host
// answer it with a forged JetStream acknowledgement.
func hostUser(h string) jetstream.TLSUser {
	pub := []string{
		"sr.delta.*." + h + ".>",
		"sr.cmd.agent." + h + ".>",
		"sr.ack.*.*",
		"sr.agent.*.leaves.*",
		"$JS.API.CONSUMER.CREATE.*.*.>",
		"$JS.API.CONSUMER.INFO.*.*",
		"$JS.API.CONSUMER.DELETE.*.*",
		"$JS.API.CONSUMER.MSG.NEXT.*.*",
		"$JS.API.STREAM.PURGE.*",
		"$JS.ACK.*.*.>",
	}
	return jetstream.TLSUser{
		Subject:   subjectDN(RoleHost, h),
		Publish:   &jetstream.SubjectRules{Allow: append(pub, logReadAPI...), Deny: denyAll},
		Subscribe: &jetstream.SubjectRules{Allow: []string{UserInbox(RoleHost, h) + ".>", "sr.ack." + h + ".*", "sr.agent." + h + ".>"}},
		Responses: true,
	}
}

// operatorUser commands and queries, never as an agent.
func operatorUser(name string) jetstream.TLSUser {
	pub := append([]string{"sr.cmd.>", "sr.q.>"}, serviceDiscovery...)
	return jetstream.TLSUser{
		Subject:   subjectDN(RoleOperator, name),
		Publish:   &jetstream.SubjectRules{Allow: append(pub, logReadAPI...), Deny: append([]string{"sr.cmd.agent.>"}, denyAll...)},
		Subscribe: &jetstream.SubjectRules{Allow: []string{UserInbox(RoleOperator, name) + ".>", logSubjects}},
	}
}

// viewerUser only queries and reads the log.
func viewerUser(name string) jetstream.TLSUser {
	pub := append([]string{"sr.q.>"}, serviceDiscovery...)
	return jetstream.TLSUser{
		Subject:   subjectDN(RoleViewer, name),
		Publish:   &jetstream.SubjectRules{Allow: append(pub, logReadAPI...), Deny: append([]string{"sr.cmd.>"}, denyAll...)},
		Subscribe: &jetstream.SubjectRules{Allow: []string{UserInbox(RoleViewer, name) + ".>", logSubjects}},
	}
}

// controlUser is the control plane: every right (it alone writes sr.evt.>).
func controlUser(name string) jetstream.TLSUser {
	return jetstream.TLSUser{Subject: subjectDN(RoleControl, name)}
}

// ServerAuth is the embedded server's mTLS configuration for the
// certificate directory dir: a user per client certificate found in it.
func ServerAuth(dir string) (*jetstream.AuthConfig, error) {
	certs, err := ScanClientCerts(dir)
	if err != nil {
		return nil, err
	}
	cfg := &jetstream.AuthConfig{CAFile: filepath.Join(dir, CAFile)}
	cfg.CertFile, cfg.KeyFile = CertPaths(dir, serverName)
	hasControl, seen := false, map[string]bool{}
	for _, c := range certs {
		if seen[subjectDN(c.Role, c.Name)] {
			continue // the same certificate under another file name
		}
		seen[subjectDN(c.Role, c.Name)] = true
		switch c.Role {
		case RoleHost:
			cfg.Users = append(cfg.Users, hostUser(c.Name))
		case RoleOperator:
			cfg.Users = append(cfg.Users, operatorUser(c.Name))
		case RoleViewer:
			cfg.Users = append(cfg.Users, viewerUser(c.Name))
		case RoleControl:
			cfg.Users, hasControl = append(cfg.Users, controlUser(c.Name)), true
		}
	}
	if !hasControl {
		return nil, fmt.Errorf("--tls-dir %s: %w", dir, ErrNoControlCert)
	}
	return cfg, nil
}

// RolesAllowed are the roles whose rules let a certificate publish to
// subject (publish true) or subscribe to it, in the order operator,
// viewer, host; a host's rules are its own subjects, so "host" stands for
// the host the subject names. Empty when only the control plane may. The
// CLI says with it what a refused call needs.
func RolesAllowed(publish bool, subject string) []string {
	var out []string
	for _, u := range []struct {
		role string
		user jetstream.TLSUser
	}{
		{RoleOperator, operatorUser(RoleOperator)},
		{RoleViewer, viewerUser(RoleViewer)},
		{RoleHost, hostUser("*")},
	} {
		rules := u.user.Subscribe
		if publish {
			rules = u.user.Publish
		}
		if rulesAllow(rules, subject) {
			out = append(out, u.role)
		}
	}
	return out
}

// rulesAllow says whether rules let subject through as the server decides:
// nil rules allow everything, a deny wins over an allow.
func rulesAllow(rules *jetstream.SubjectRules, subject string) bool {
	if rules == nil {
		return true
	}
	match := func(filters []string) bool {
		return slices.ContainsFunc(filters, func(f string) bool { return server.SubjectMatchesFilter(subject, f) })
	}
	return (len(rules.Allow) == 0 || match(rules.Allow)) && !match(rules.Deny)
}
