// Package jstest runs real embedded NATS JetStream servers for tests: one
// server (MustRunServer), a cluster on loopback (MustRunCluster), a client
// that reconnects quickly (MustConnect) and a restart on the same store and
// port (Restart). Every server listens on loopback only, on random ports,
// keeps its store in tb.TempDir(), syncs every write (SyncAlways, as serve
// does) and shuts down when the test ends.
//
// Typical use:
//
//	s := jstest.MustRunServer(t)
//	nc := jstest.MustConnect(t, s.ClientURL())
//	log, err := jetstream.Open(ctx, nc, jetstream.Config{})
package jstest
