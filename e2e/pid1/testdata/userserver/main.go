// Command userserver is the new user's own Go server of the README
// ("Writing a swap-ready server"): the README's main verbatim (the e2e test
// checks it), plus a handler that says which release answers.
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"

	"github.com/hotswap-dev/hotswap/reuseport"
)

// release is set with -ldflags "-X main.release=v2", so two builds differ.
var release = "dev"

func hello(w http.ResponseWriter, _ *http.Request) {
	fmt.Fprintf(w, "%s pid=%d\n", release, os.Getpid())
}

func main() {
	http.HandleFunc("/", hello)
	if err := reuseport.ListenAndServe("http", ":8080", &http.Server{}); err != nil {
		log.Fatal(err)
	}
}
