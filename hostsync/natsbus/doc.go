// Package natsbus is the host agent's NATS adapter: the one package of
// hostsync that imports nats.go and its jetstream client. It implements the
// interfaces the agent declares where it uses them (hostsync.ControlPlane,
// hostsync.Peers, hostsync.DeltaStreams with hostsync.BatchConsumer, and
// hostsync.BatchPublisher) on one NATS connection, and holds the JetStream
// configuration of the delta streams and of the VMs' consumers on them
// (docs/architecture.md describes the streams, docs/security.md who may
// use which subject).
//
// The agent is built on it in cmd/siterecovery:
//
//	bus, err := natsbus.New(nc)
//	...
//	agent, err := hostsync.NewAgent(hostsync.AgentConfig{Transport: bus.Transport(), ...})
//
// The adapter holds no policy: flow control (the in-flight byte budget, the
// pull budget the consumers share), when to acknowledge and what to send
// again are the agent's. What it adds is the mapping between the two
// vocabularies: the client's not-found and timeout errors to hostsync's
// sentinels, and a delivery's settling (Ack, AckSync, Nak with or without a
// delay, InProgress, Term) to the JetStream acknowledgements.
package natsbus
