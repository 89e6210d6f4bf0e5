package probe_test

import (
	"context"
	"fmt"
	"time"

	"github.com/tcpkeep/tcpkeep/probe"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// A heartbeat server and a client that beats three times, on loopback, in the
// namespace this program runs in (a nil Namespace).
func ExampleRun() {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	l, err := probe.Listen(nil, "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	go (&probe.Server{}).Serve(ctx, l)

	c, err := probe.Dial(ctx, nil, l.Addr().String(), probe.SocketOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	v, err := probe.Run(ctx, c, probe.Config{Interval: 10 * time.Millisecond, Count: 3}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("alive %v, %d of %d answered\n", v.Alive, v.Received, v.Sent)
	// Output: alive true, 3 of 3 answered
}

// How long does the path to a heartbeat server keep an idle connection? It
// takes about that long, or Max, to find out.
func ExampleDiscoverIdle() {
	res, err := probe.DiscoverIdle(context.Background(), probe.IdleConfig{Addr: "203.0.113.7:7077", Max: 20 * time.Minute}, func(t probe.Trial) {
		fmt.Println(t.Idle, t.Survived)
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("the path keeps an idle flow for at least", res.Estimate)
}

// Dial with keepalive of the connection's own (TCP_KEEPIDLE 60 s, TCP_KEEPINTVL
// 10 s, TCP_KEEPCNT 5) and TCP_USER_TIMEOUT, set before it connects.
func ExampleDial() {
	o := probe.SocketOptions{
		Keepalive:   &sysctl.Keepalive{Time: time.Minute, Intvl: 10 * time.Second, Probes: 5},
		UserTimeout: 30 * time.Second,
	}
	c, err := probe.Dial(context.Background(), nil, "127.0.0.1:7077", o)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	fmt.Println("connected to", c.RemoteAddr())
}
