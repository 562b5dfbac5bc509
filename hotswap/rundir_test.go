package hotswap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPrivateDir (issue 13, item 4): the $TMPDIR fallback is used only when
// it is hotswap's own; another user's directory, a symlink or an open mode
// is refused with a reason, never trusted.
func TestPrivateDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create another user's directory")
	}
	tmp := t.TempDir()
	mine := filepath.Join(tmp, "fresh")
	if err := privateDir(mine); err != nil {
		t.Fatalf("fresh directory: %v", err)
	}
	if fi, err := os.Stat(mine); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("created with mode %v, %v; want 0700", fi.Mode().Perm(), err)
	}
	if err := privateDir(mine); err != nil {
		t.Fatalf("own existing directory: %v", err)
	}
	theirs := filepath.Join(tmp, "theirs")
	_ = os.Mkdir(theirs, 0o700)
	_ = os.Chown(theirs, 4242, 4242)
	open := filepath.Join(tmp, "open")
	_ = os.Mkdir(open, 0o777)
	_ = os.Chmod(open, 0o777)
	link := filepath.Join(tmp, "link")
	_ = os.Symlink(mine, link)
	file := filepath.Join(tmp, "file")
	_ = os.WriteFile(file, nil, 0o600)
	for _, tc := range []struct{ dir, want string }{
		{theirs, "owned by uid 4242"},
		{open, "mode 0777"},
		{link, "is a symlink"},
		{file, "not a directory"},
	} {
		err := privateDir(tc.dir)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "--runtime-dir") {
			t.Errorf("%s: want an error with %q, got %v", tc.dir, tc.want, err)
		}
	}
}

// TestPickRuntimeDir (issue 13, item 12): a relative --runtime-dir is
// refused at start-up. (The $TMPDIR fallback is reached only when
// /run/hotswap is not writable, as for a non-root user: e2e/pid1 covers it.)
func TestPickRuntimeDir(t *testing.T) {
	if _, err := pickRuntimeDir("run"); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Fatalf("relative --runtime-dir: %v", err)
	}
	d := t.TempDir()
	if got, err := pickRuntimeDir(d); err != nil || got != d {
		t.Fatalf("absolute --runtime-dir: %q, %v", got, err)
	}
}
