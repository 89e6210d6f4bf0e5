package netns_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// Every namespace of the host, with who it belongs to, and what could not be
// seen.
func ExampleEnumerate() {
	found, err := netns.Enumerate()
	if err != nil {
		log.Fatal(err)
	}
	for _, n := range found.Namespaces {
		fmt.Println(n.Name, n.Ino, n.Host, n.Comm, n.ContainerID, n.PodUID)
	}
	for _, s := range found.Skipped {
		if c, ok := netns.MissingCapability(s.Err); ok {
			fmt.Println("not seen without", c, s.Path)
		}
	}
}

// The keepalive tunables and socket count of every namespace, two at a time,
// written in order; a namespace that went away or could not be entered is a
// result, not the end of the walk.
func ExampleWalker_Walk() {
	found, err := netns.Enumerate()
	if err != nil {
		log.Fatal(err)
	}
	w := &netns.Walker{Parallel: 2, Enter: true, Done: func(r netns.Result) {
		if r.Err != nil {
			fmt.Fprintf(os.Stderr, "netns %s: %v\n", r.Namespace.Name, r.Err)
		}
	}}
	_, err = w.Walk(context.Background(), found.Namespaces, os.Stdout, func(ctx context.Context, v *netns.Visit) error {
		t, err := sysctl.Read(v) // on the thread inside the namespace
		if err != nil {
			return err
		}
		c, err := diag.Dial(nil) // made on that thread too: without Enter, diag.Dial(v)
		if err != nil {
			return err
		}
		defer c.Close()
		n := 0
		for _, err := range c.Sockets(ctx, nil) {
			if err != nil {
				return err
			}
			n++
		}
		_, err = fmt.Fprintf(v.Out, "%s keepalive_time=%v sockets=%d\n", v.Name, t.Time, n)
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
}
