// Package exampleserver is the HTTP server built into hotswap (the hidden
// `hotswap serve` command), so an image needs nothing else to show a swap.
// It is also the model of a swap-ready Go server: it takes its listener and
// reports readiness through reuseport, and drains without dropping requests.
//
// Its fault options (exit at start, never ready, exit after ready, ignore
// the stop signal) let tests play a broken release with a real process.
package exampleserver
