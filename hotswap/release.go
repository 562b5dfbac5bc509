package hotswap

import (
	"fmt"
	"slices"
)

// Release is what a generation runs: one version of the server.
// The command line gives the first release; sources offer new ones.
type Release struct {
	// Version is a human label ("v1.5"); sources take it from the manifest,
	// or derive it from the file (its sha256 prefix) when none is given.
	Version string `json:"version"`
	// Path is the executable. Relative paths are looked up in $PATH at start.
	Path string `json:"path"`
	// Args are the arguments after argv[0].
	Args []string `json:"args,omitempty"`
	// Env is added to hotswap's own environment ("K=V").
	Env []string `json:"env,omitempty"`
	// SHA256 pins the binary's content (hex). Empty: not pinned.
	SHA256 string `json:"sha256,omitempty"`
	// Preflight, when set, is run as `Path Preflight...` before the release
	// may start; it must exit 0 within the preflight timeout.
	Preflight []string `json:"preflight,omitempty"`
	// Source names where the release came from ("command line", "watch:/releases/current").
	Source string `json:"source,omitempty"`

	// bin is Path opened once by the engine before verification: what the
	// verifier checks and every generation of the release executes (see
	// Binary). nil until the engine opens it; never compared or shown.
	bin *Binary
}

// Same reports whether r and o describe the same release: sources fire a swap
// only for a release that differs from the serving one. The open binary
// does not count: a release offered again is the same release.
func (r Release) Same(o Release) bool {
	return r.Version == o.Version && r.Path == o.Path && r.SHA256 == o.SHA256 &&
		slices.Equal(r.Args, o.Args) && slices.Equal(r.Env, o.Env)
}

// String is the release as logs show it.
func (r Release) String() string {
	if r.Version == "" {
		return r.Path
	}
	return fmt.Sprintf("%s (%s)", r.Version, r.Path)
}
