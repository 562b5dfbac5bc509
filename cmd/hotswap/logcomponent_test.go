package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// Issue 15: one component key per line, and durations a human can read,
// in both formats.
func TestLoggerOneComponentReadableDurations(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		var buf bytes.Buffer
		log, err := newLogger(&buf, format, "info")
		if err != nil {
			t.Fatal(err)
		}
		log.With("component", "kube").Info("x", "drain", 1500*time.Millisecond)
		log.Info("y")
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) != 2 {
			t.Fatalf("%s: %d lines: %q", format, len(lines), buf.String())
		}
		for i, want := range []string{"kube", "hotswap"} {
			if n := strings.Count(lines[i], "component"); n != 1 {
				t.Errorf("%s: %d component keys in %q", format, n, lines[i])
			}
			if !strings.Contains(lines[i], want) {
				t.Errorf("%s: %q lacks component %s", format, lines[i], want)
			}
		}
		if !strings.Contains(lines[0], "1.5s") {
			t.Errorf("%s: duration not readable: %q", format, lines[0])
		}
		if format == "json" {
			var m map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &m); err != nil || m["drain"] != "1.5s" {
				t.Errorf("json: drain = %v (%v)", m["drain"], err)
			}
		}
	}
}
