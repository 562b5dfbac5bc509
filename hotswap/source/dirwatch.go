package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// fileState is what a path looks like right now; two equal states taken a
// settle interval apart mean the file stood still in between.
type fileState struct {
	missing bool   // the path (or a link on the way) does not exist
	err     string // another error resolving or stat-ing it
	real    string // the path with every symlink resolved
	dev     uint64
	ino     uint64
	size    int64
	mtime   int64 // ns
	ctime   int64 // ns: catches chmod and link-count changes
	mode    os.FileMode
}

// stateOf resolves path and stats what it points to.
func stateOf(path string) fileState {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fileState{missing: true}
		}
		return fileState{err: err.Error()}
	}
	fi, err := os.Stat(real)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fileState{missing: true}
		}
		return fileState{err: err.Error()}
	}
	return stateFrom(real, fi)
}

func stateFrom(real string, fi os.FileInfo) fileState {
	s := fileState{real: real, size: fi.Size(), mtime: fi.ModTime().UnixNano(), mode: fi.Mode()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.dev, s.ino = uint64(st.Dev), st.Ino
		s.ctime = st.Ctim.Sec*1e9 + st.Ctim.Nsec
	}
	return s
}

// dirWatch watches the directory of one path, and the directory the path
// currently resolves into, and calls settled once the path has stood still
// for the settle interval after a change.
type dirWatch struct {
	path   string // absolute, clean
	settle time.Duration
	resync time.Duration
	log    *slog.Logger
	fsw    *fsnotify.Watcher
	dirs   map[string]bool // watched directories
}

// newDirWatch starts watching path's directory, which must exist (it is the
// mount point of the volume; a missing one is a typo worth failing on).
func newDirWatch(path string, settle, resync time.Duration, log *slog.Logger) (*dirWatch, error) {
	if !filepath.IsAbs(path) {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, err
		}
		path = abs
	}
	path = filepath.Clean(path)
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("watch %s: directory %s: %w (mount the volume there, or fix the path)", path, dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("watch %s: %s is not a directory", path, dir)
	}
	if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("watch %s: is a directory; name the binary, the manifest or a symlink to it (e.g. %s/current)", path, path)
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: inotify: %w (raise fs.inotify.max_user_instances?)", path, err)
	}
	w := &dirWatch{path: path, settle: settle, resync: resync, log: log, fsw: fsw, dirs: map[string]bool{}}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		fsw.Close()
		return nil, fmt.Errorf("watch %s: %w", path, err)
	}
	if err := fsw.Add(realDir); err != nil {
		fsw.Close()
		return nil, fmt.Errorf("watch %s: inotify on %s: %w", path, realDir, err)
	}
	w.dirs[realDir] = true
	w.follow()
	return w, nil
}

// follow keeps a watch on the directory the path resolves into (the target
// of a "current" symlink, the kubelet's timestamped directory), so a file
// written in place there is seen too; watches on directories no longer on
// the way are dropped. Watches are keyed by the resolved directory: inotify
// follows a symlinked directory once, at the time of the watch, so a path
// through a symlinked directory (/releases -> /vol/r1) is watched where it
// resolves now, and the directory holding that link too, so a flip of the
// link itself is seen.
func (w *dirWatch) follow() {
	want := map[string]bool{}
	add := func(d string) {
		if real, err := filepath.EvalSymlinks(d); err == nil {
			want[real] = true
		}
	}
	dir := filepath.Dir(w.path)
	add(dir)
	for p := dir; p != filepath.Dir(p); p = filepath.Dir(p) {
		if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			add(filepath.Dir(p))
		}
	}
	if real, err := filepath.EvalSymlinks(w.path); err == nil {
		add(filepath.Dir(real))
	}
	for d := range want {
		if !w.dirs[d] {
			if err := w.fsw.Add(d); err == nil {
				w.dirs[d] = true
			}
		}
	}
	for d := range w.dirs {
		if !want[d] {
			_ = w.fsw.Remove(d) // fails harmlessly if the kernel dropped it already
			delete(w.dirs, d)
		}
	}
}

// run calls settled(state) whenever the path has changed and then stood
// still for the settle interval, starting with the state at start. settled
// returns false when the file changed under it (it is then tried again a
// settle interval later). run returns when ctx is done.
func (w *dirWatch) run(ctx context.Context, settled func(fileState) bool) {
	defer w.fsw.Close()
	timer := time.NewTimer(w.settle)
	pending := stateOf(w.path)
	armed := true
	var last fileState // the last state settled accepted
	var resync <-chan time.Time
	if w.resync > 0 {
		t := time.NewTicker(w.resync)
		defer t.Stop()
		resync = t.C
	}
	// changed re-reads the path; a change (re)starts the settle interval,
	// an event that changed nothing about the path leaves it running.
	changed := func() {
		w.follow()
		now := stateOf(w.path)
		if armed && now == pending || !armed && now == last {
			return
		}
		pending = now
		armed = true
		timer.Reset(w.settle)
	}
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			w.log.Debug("watch event", "path", w.path, "event", ev.String())
			changed()
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			// An overflow lost events: look again rather than trust them.
			w.log.Warn("watch error; re-reading the path", "path", w.path, "err", err)
			armed, last = false, fileState{err: "resync"}
			changed()
		case <-resync:
			changed()
		case <-timer.C:
			armed = false
			now := stateOf(w.path)
			if now != pending {
				pending, armed = now, true
				timer.Reset(w.settle)
				continue
			}
			if settled(now) {
				last = now
				continue
			}
			pending, armed = stateOf(w.path), true
			timer.Reset(w.settle)
		}
	}
}
