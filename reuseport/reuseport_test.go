package reuseport

import (
	"errors"
	"testing"
)

// Standalone (no LISTEN_FDS), Listener binds its fallback once per name, and
// the process state a test resets is all the package remembers.
func TestListenerFallbackAndReset(t *testing.T) {
	t.Setenv("LISTEN_FDS", "")
	t.Setenv("HOTSWAP_GENERATION", "")
	resetProcess()
	t.Cleanup(resetProcess)
	a, err := Listener("http", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if b, err := Listener("http", "127.0.0.1:0"); err != nil || b != a {
		t.Fatalf("second Listener(http) = %v, %v; want the same listener", b, err)
	}
	if _, err := Listener("admin", ""); !errors.Is(err, ErrNoListener) {
		t.Fatalf("no fallback: %v, want ErrNoListener", err)
	}
	resetProcess()
	c, err := Listener("http", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c == a {
		t.Fatal("after resetProcess, Listener returned the old listener")
	}
	Steer() // nothing bound under hotswap: nothing to steer, no panic
}
