package pid1

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPlantedRuntimeDir (issue 13, item 4): another user created the
// $TMPDIR fallback runtime directory first, open to all. hotswap must not
// put its control socket there (that user could replace it, and `hotswap
// swap` would print "swapped" while nothing swapped): it says why and runs
// on without a control socket, as on a read-only root.
func TestPlantedRuntimeDir(t *testing.T) {
	const nobody = 65534
	dir := tempDir(t)
	log := filepath.Join(dir, "child.log")
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o777); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(tmp, os.ModeSticky|0o777)
	planted := filepath.Join(tmp, "hotswap-"+itoa(nobody))
	if err := os.Mkdir(planted, 0o777); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(planted, 0o777)
	if err := os.Chown(planted, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	r := startHotswap(t, opts{mode: asPID1, uid: nobody, env: []string{"TMPDIR=" + tmp}, runtimeDir: "-"}, childCmd("log="+log)...)
	waitLog(t, r, log, "start gen=1", 10*time.Second)
	waitOutput(t, r, "owned by uid 4242", 5*time.Second)
	entries, _ := os.ReadDir(planted)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".sock") {
			t.Fatalf("hotswap put %s in a runtime directory another user owns:\n%s", e.Name(), r.out)
		}
	}
}
