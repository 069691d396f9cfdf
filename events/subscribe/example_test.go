package subscribe_test

import (
	"context"
	"fmt"
	"log"

	"github.com/nats-io/nats.go"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/subscribe"
)

// Follow every completed failover from the beginning of the log and print
// which VM now runs where. It needs a running control plane's NATS server,
// so the example is compiled but not run (no Output comment).
func Example() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()

	ctx := context.Background()
	sub, err := subscribe.Follow(ctx, nc, 1, events.FailoverCompleted, events.FailoverCommitted)
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()

	for rec, err := range sub.All(ctx) {
		if err != nil {
			log.Fatal(err)
		}
		switch d := rec.Data.(type) {
		case events.FailoverCompletedData:
			fmt.Printf("%d: %s failed over to %s (%s, epoch %d)\n", rec.Seq, rec.Aggregate.ID, d.Host, d.Site, d.Epoch)
		case events.FailoverCommittedData:
			fmt.Printf("%d: %s committed\n", rec.Seq, rec.Aggregate.ID)
		}
	}
}
