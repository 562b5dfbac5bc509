package source

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/hotswap"
)

// Issue 15: a release refused for its mode and fixed in place (chmod) is
// offered again; a change that is not offered says why.
func TestWatchReoffersAfterChmodFix(t *testing.T) {
	dir := t.TempDir()
	v1, _ := blob(t, 4096)
	v2, sum2 := blob(t, 4096)
	writeFile(t, filepath.Join(dir, "v1", "server"), v1)
	writeFile(t, filepath.Join(dir, "v2", "server"), v2)
	current := filepath.Join(dir, "current")
	if err := os.Symlink("v1/server", current); err != nil {
		t.Fatal(err)
	}
	rec, logs := startWatch(t, WatchOptions{Path: current, Base: hotswap.Release{Path: current}})
	rec.none(t, 3*testSettle)
	if !strings.Contains(logs.String(), "not offered: same content as the command line's release") {
		t.Fatalf("the unchanged start was not explained:\n%s", logs.String())
	}
	if err := os.Chmod(filepath.Join(dir, "v2", "server"), 0o777); err != nil {
		t.Fatal(err)
	}
	flip(t, current, "v2/server")
	if r := rec.next(t, 5*time.Second); r.SHA256 != sum2 {
		t.Fatalf("offered %+v", r)
	}
	// The engine refuses it (world-writable); the operator fixes it in place.
	if err := os.Chmod(filepath.Join(dir, "v2", "server"), 0o755); err != nil {
		t.Fatal(err)
	}
	if r := rec.next(t, 5*time.Second); r.SHA256 != sum2 {
		t.Fatalf("re-offered %+v", r)
	}
	if !strings.Contains(logs.String(), "offered again") {
		t.Fatalf("the re-offer was not explained:\n%s", logs.String())
	}
}

// --watch /link/current, where /link is a symlink to the volume's directory.
func TestWatchThroughSymlinkedDirectory(t *testing.T) {
	dir := t.TempDir()
	vol := filepath.Join(dir, "vol")
	v1, _ := blob(t, 4096)
	v2, sum2 := blob(t, 4096)
	writeFile(t, filepath.Join(vol, "v1", "server"), v1)
	writeFile(t, filepath.Join(vol, "v2", "server"), v2)
	if err := os.Symlink("v1/server", filepath.Join(vol, "current")); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "releases")
	if err := os.Symlink(vol, link); err != nil {
		t.Fatal(err)
	}
	current := filepath.Join(link, "current")
	rec, _ := startWatch(t, WatchOptions{Path: current, Base: hotswap.Release{Path: current}})
	rec.none(t, 3*testSettle)
	flip(t, filepath.Join(vol, "current"), "v2/server")
	if r := rec.next(t, 5*time.Second); r.SHA256 != sum2 {
		t.Fatalf("offered %+v", r)
	}
	// The directory link itself flipped to another volume.
	vol2 := filepath.Join(dir, "vol2")
	v3, sum3 := blob(t, 4096)
	writeFile(t, filepath.Join(vol2, "current"), v3)
	flip(t, link, vol2)
	if r := rec.next(t, 5*time.Second); r.SHA256 != sum3 {
		t.Fatalf("offered %+v after the directory link flipped", r)
	}
}

func TestWatchWarnsOnDirectoryTarget(t *testing.T) {
	dir := t.TempDir()
	v1, _ := blob(t, 4096)
	writeFile(t, filepath.Join(dir, "v1", "server"), v1)
	current := filepath.Join(dir, "current")
	if err := os.Symlink("v1", current); err != nil { // ln -sfn v1 current: a directory
		t.Fatal(err)
	}
	rec, logs := startWatch(t, WatchOptions{Path: current})
	rec.none(t, 3*testSettle)
	if !strings.Contains(logs.String(), "points to a directory") {
		t.Fatalf("no warning for a current link to a directory:\n%s", logs.String())
	}
}
