package pki

import (
	"fmt"
	"path/filepath"

	"github.com/siterecovery/siterecovery/events/jetstream"
)

// The NATS permissions of each role (docs/security.md).
// NATS wildcards match whole tokens only, so stream and consumer names are
// matched with "*" where they carry a site or VM name.

// logReadAPI are the JetStream API calls that follow and load the event
// log: stream info, direct gets, and ordered (ephemeral) consumers.
var logReadAPI = []string{
	"$JS.API.INFO",
	"$JS.API.STREAM.INFO.*",
	"$JS.API.DIRECT.GET." + jetstream.DefaultStream,
	"$JS.API.DIRECT.GET." + jetstream.DefaultStream + ".>",
	"$JS.API.STREAM.MSG.GET." + jetstream.DefaultStream,
	"$JS.API.CONSUMER.CREATE." + jetstream.DefaultStream + ".*.>",
	"$JS.API.CONSUMER.INFO." + jetstream.DefaultStream + ".*",
	"$JS.API.CONSUMER.DELETE." + jetstream.DefaultStream + ".*",
	"$JS.API.CONSUMER.MSG.NEXT." + jetstream.DefaultStream + ".*",
}

// logSubjects are the events as they are appended: every user may follow
// them with a plain subscription (events --follow, nats sub).
const logSubjects = "sr.evt.>"

// denyAll are subjects no user but the control plane publishes to: the
// events themselves, and the JetStream calls that change streams or read
// another's messages by a side door.
var denyAll = []string{
	"sr.evt.>",
	"$JS.API.STREAM.CREATE.>", "$JS.API.STREAM.UPDATE.>", "$JS.API.STREAM.DELETE.>",
	"$JS.API.STREAM.MSG.DELETE.>", "$JS.API.STREAM.SNAPSHOT.>", "$JS.API.STREAM.RESTORE.>",
	"$JS.API.STREAM.PEER.>", "$JS.API.STREAM.LEADER.>", "$JS.API.META.>", "$JS.API.ACCOUNT.>",
	"$JS.API.CONSUMER.DURABLE.CREATE.>", "$JS.API.CONSUMER.PAUSE.>", "$JS.API.CONSUMER.UNPIN.>",
	"$JS.API.STREAM.PURGE." + jetstream.DefaultStream,
	"$SYS.>",
}

// serviceDiscovery lets a user find the micro service (nats micro ls).
var serviceDiscovery = []string{"$SRV.PING", "$SRV.PING.>", "$SRV.INFO", "$SRV.INFO.>", "$SRV.STATS", "$SRV.STATS.>"}

// hostUser is the user of host h's certificate: its own delta subjects and
// reports, the delta streams' consumers (one per VM, named by the VM: the
// server cannot tell which host receives which VM), cycle acks, the
// hash-tree leaves other hosts ask it for during a resync (answered with
// allow_responses), and the log to follow.
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
		Subscribe: &jetstream.SubjectRules{Allow: []string{UserInbox(RoleHost, h) + ".>", "sr.ack." + h + ".*", "sr.agent." + h + ".>", logSubjects}},
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
