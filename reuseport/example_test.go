package reuseport_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"time"

	"github.com/hotswap-dev/hotswap/reuseport"
)

// A swap-ready server: under hotswap (--listen http=tcp://:8080) it serves the
// socket PID 1 passes and reports READY=1; standalone it binds :8080 itself
// with SO_REUSEPORT. On SIGTERM it drains without dropping a request.
func Example() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello\n")
	})
	if err := reuseport.ListenAndServe("http", ":8080", &http.Server{}); err != nil {
		log.Fatal(err)
	}
}

// The same pieces, used directly: take the listener, serve, report ready,
// and drain when told to stop.
func ExampleServe() {
	ln, err := reuseport.Listener("http", "127.0.0.1:0") // inherited, or bound here
	if err != nil {
		log.Fatal(err)
	}
	srv := reuseport.Serve(&http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	})}, ln)
	reuseport.Steer() // no-op outside hotswap --mode reuseport
	reuseport.Ready() // no-op without NOTIFY_SOCKET

	resp, err := http.Get("http://" + ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(string(body))
	http.DefaultClient.CloseIdleConnections() // this example's client is done

	// On SIGTERM: stop accepting, "Connection: close" for up to 2s (less once
	// no connection is left), then shut down.
	if err := srv.Drain(context.Background(), 2*time.Second); err != nil {
		log.Fatal(err)
	}
	// Output: hello
}
