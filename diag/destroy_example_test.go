package diag_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"

	"github.com/tcpkeep/tcpkeep/diag"
)

// Print every TCP connection of this namespace as the kernel frees it, with
// what its last tcp_info says, until interrupted.
func ExampleSubscribeDestroyed() {
	sub, err := diag.SubscribeDestroyed(nil) // nil: this thread's namespace
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	for s, err := range sub.Sockets(ctx) {
		switch {
		case errors.Is(err, diag.ErrOverrun):
			log.Print(err) // some were lost; the stream goes on
		case errors.Is(err, context.Canceled):
			return
		case err != nil:
			log.Fatal(err)
		default:
			fmt.Printf("%s: %d retransmissions and %d probes unanswered, %d bytes received\n",
				s.ID(), s.Info.Retransmits, s.Info.Probes, s.Info.BytesRecv)
		}
	}
}
