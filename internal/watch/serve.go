package watch

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"
)

// Listen listens on addr (host:port) for Serve; "" is no listener.
func Listen(addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	return net.Listen("tcp", addr)
}

// Serve answers HTTP on l until ctx ends: /metrics with metrics, and /healthz
// with 200 "ok" while rounds keep coming and 503 with why when they do not
// (Healthy). Requests in flight when ctx ends get five seconds to finish.
func (e *Engine) Serve(ctx context.Context, l net.Listener, metrics http.Handler) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := e.Healthy(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, err.Error()+"\n")
			return
		}
		io.WriteString(w, "ok\n")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	stop := context.AfterFunc(ctx, func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(c)
	})
	defer stop()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
