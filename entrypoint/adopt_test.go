package entrypoint

import (
	"os"
	"syscall"
	"testing"
	"time"
)

func waitState(t *testing.T, pid int, want byte) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for procState(pid) != want {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d: state %c, want %c", pid, procState(pid), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAdoptZombie: a child forked before the reaper existed (as by the
// hotswap an upgrade replaced) that is already a zombie is reaped at once
// by NewReaperAdopting, its status goes to its Process, not to OnOrphan.
func TestAdoptZombie(t *testing.T) {
	pid, err := syscall.ForkExec("/bin/sh", []string{"sh", "-c", "exit 7"}, &syscall.ProcAttr{Files: []uintptr{0, 1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, pid, 'Z')
	r, procs, err := NewReaperAdopting(nil, []Adopted{{PID: pid, Started: time.Now()}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	select {
	case <-procs[pid].Done():
	case <-time.After(10 * time.Second):
		t.Fatal("adopted zombie never reaped")
	}
	if c := procs[pid].Status().Code(); c != 7 || r.Orphans() != 0 {
		t.Fatalf("adopted child: code %d, orphans %d; want 7 and 0", c, r.Orphans())
	}
}

// TestHoldKeepsZombie: while the reaper is held a child that exits stays
// a zombie with its status; once released it is reaped as usual.
func TestHoldKeepsZombie(t *testing.T) {
	r := newTestReaper(t)
	p, err := r.Start(Spec{Path: "/bin/sh", Argv: []string{"sh", "-c", "read x; exit 3"}, Files: []*os.File{nil, os.Stdout, os.Stderr}})
	if err != nil {
		t.Fatal(err)
	}
	release := r.Hold()
	_ = syscall.Kill(p.PID, syscall.SIGKILL)
	waitState(t, p.PID, 'Z')
	if p.Exited() {
		release()
		t.Fatal("reaped while the reaper was held")
	}
	release()
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("never reaped after release")
	}
	if p.Status().Signal != syscall.SIGKILL {
		t.Fatalf("status %v, want killed by SIGKILL", p.Status())
	}
}
