package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// The README's configuration reference is generated from the flags; this
// test fails when they drift. Regenerate with hack/update-readme.sh.
func TestReadmeFlagsTableIsCurrent(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- flags:begin -->\n", "<!-- flags:end -->"
	s := string(b)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the %q ... %q markers", begin, end)
	}
	var want bytes.Buffer
	writeFlagsDoc(&want)
	if got := s[i+len(begin) : j]; got != want.String() {
		t.Fatalf("README.md's flags table is stale: run hack/update-readme.sh\n--- README\n%s\n--- flags\n%s", got, want.String())
	}
}

// ListenAndServe returns nil after a clean drain: a snippet that wraps it in
// log.Fatal makes every drained generation exit 1 (issue 15).
func TestReadmeSnippetsDoNotFatalOnCleanDrain(t *testing.T) {
	for _, p := range []string{"../../README.md", "../../reuseport/README.md", "../../docs/handoff.md"} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "log.Fatal(reuseport.ListenAndServe") {
			t.Errorf("%s: log.Fatal(reuseport.ListenAndServe(...)) exits 1 after every clean drain; check the error first", p)
		}
	}
}
