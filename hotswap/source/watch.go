package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/hotswap-dev/hotswap/hotswap"
)

// DefaultSettle is how long a watched binary must stand still before it is
// offered, when WatchOptions.Settle is zero.
const DefaultSettle = time.Second

// DefaultResync is how often a watched path is looked at even without an
// inotify event (lost events, volumes whose writers inotify cannot see).
const DefaultResync = time.Minute

// errChanged says a file changed while it was read; it is tried again.
var errChanged = errors.New("changed while being read")

// WatchOptions configure a Watch.
type WatchOptions struct {
	// Path is the binary, or a symlink to it (a "current" link flipped with
	// ln -sfn, the kubelet's KEY -> ..data/KEY), on a mounted volume.
	Path string
	// Settle is how long the file must be unchanged before it is offered
	// (default DefaultSettle): a copy in progress is never offered.
	Settle time.Duration
	// Resync is how often the path is re-read without an event (default
	// DefaultResync; negative: never).
	Resync time.Duration
	// Base is the command line's release: its Args and Env are kept for
	// every binary found, and a binary identical to its file at start
	// (same sha256) is not offered.
	Base hotswap.Release
	Log  *slog.Logger
}

// Watch offers the binary at a watched path whenever its content changes.
// The release it offers names the resolved file (so what is verified is
// what is started) and pins its sha256; its version is "sha256:" and the
// first 12 hex digits.
type Watch struct {
	opts WatchOptions
	dw   *dirWatch
	log  *slog.Logger
	name string

	lastSum string    // content last offered (or the command line's)
	offered fileState // the file last offered; zero: only the command line's
	gone    bool      // the path was missing last time: said so once
}

// NewWatch checks the options and starts watching the path's directory.
func NewWatch(opts WatchOptions) (*Watch, error) {
	if opts.Path == "" {
		return nil, errors.New("watch: no path; give --watch /releases/current")
	}
	if opts.Settle == 0 {
		opts.Settle = DefaultSettle
	}
	if opts.Settle < 0 {
		return nil, fmt.Errorf("settle %s: must not be negative", opts.Settle)
	}
	if opts.Resync == 0 {
		opts.Resync = DefaultResync
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	dw, err := newDirWatch(opts.Path, opts.Settle, opts.Resync, opts.Log)
	if err != nil {
		return nil, err
	}
	w := &Watch{opts: opts, dw: dw, name: "watch:" + dw.path}
	w.log = opts.Log.With("source", w.name)
	return w, nil
}

// Name is how releases from this source are labelled ("watch:/releases/current").
func (w *Watch) Name() string { return w.name }

// Run offers releases to o until ctx is done.
func (w *Watch) Run(ctx context.Context, o Offerer) {
	if w.opts.Base.Path != "" {
		if real, err := filepath.EvalSymlinks(w.opts.Base.Path); err == nil {
			if sum, _, err := hashFile(real); err == nil {
				w.lastSum = sum // already serving this content
			}
		}
	}
	w.log.Info("watching for new releases", "path", w.dw.path, "settle", w.opts.Settle)
	w.dw.run(ctx, func(st fileState) bool { return w.settled(st, o) })
}

func (w *Watch) settled(st fileState, o Offerer) bool {
	switch {
	case st.missing:
		if !w.gone {
			w.log.Warn("watched release is gone; the serving generation keeps serving until a new one appears", "path", w.dw.path)
			w.gone = true
		}
		return true
	case st.err != "":
		w.log.Warn("cannot read the watched release; the serving generation keeps serving", "path", w.dw.path, "err", st.err)
		return true
	}
	if w.gone {
		w.log.Info("watched release is back", "path", w.dw.path)
		w.gone = false
	}
	if st.mode.IsDir() {
		w.log.Warn("watched path points to a directory; ignoring it: point it at the binary (ln -sfn v2/server current, not ln -sfn v2 current)", "path", w.dw.path, "resolved", st.real)
		return true
	}
	if !st.mode.IsRegular() {
		w.log.Warn("watched path is not a regular file; ignoring it", "path", w.dw.path, "resolved", st.real, "mode", st.mode.String())
		return true
	}
	sum, after, err := hashFile(st.real)
	if errors.Is(err, errChanged) || err == nil && after != st {
		return false // still being written: settle again
	}
	if err != nil {
		w.log.Warn("cannot read the watched release", "path", st.real, "err", err)
		return true
	}
	if sum == w.lastSum {
		// The same file fixed in place (chmod after a refusal for its mode,
		// chown) is offered again: the engine tries a release that failed
		// once its file changed. Anything else with the same content is not
		// a new release.
		if w.offered.real == "" || st.real != w.offered.real || st.mode == w.offered.mode && st.ctime == w.offered.ctime {
			what := "the release last offered"
			if w.offered.real == "" {
				what = "the command line's release"
			}
			w.log.Info("watched path changed; not offered: same content as "+what, "path", w.dw.path, "resolved", st.real, "version", "sha256:"+sum[:12])
			return true
		}
		w.log.Info("same release changed in place (mode or owner); offered again", "path", st.real, "mode", st.mode.String())
	}
	w.lastSum = sum
	w.offered = st
	r := hotswap.Release{
		Version: "sha256:" + sum[:12],
		Path:    st.real,
		Args:    w.opts.Base.Args,
		Env:     w.opts.Base.Env,
		SHA256:  sum,
		Source:  w.name,
	}
	w.log.Info("new release found", "version", r.Version, "path", r.Path, "size", st.size)
	o.Offer(r)
	return true
}

// hashFile returns the sha256 of the file at real and its state after
// reading; errChanged when it changed while being read.
func hashFile(real string) (string, fileState, error) {
	f, err := os.Open(real)
	if err != nil {
		return "", fileState{}, err
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return "", fileState{}, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fileState{}, err
	}
	after, err := f.Stat()
	if err != nil {
		return "", fileState{}, err
	}
	s1, s2 := stateFrom(real, before), stateFrom(real, after)
	if s1 != s2 {
		return "", s2, errChanged
	}
	return hex.EncodeToString(h.Sum(nil)), s2, nil
}
