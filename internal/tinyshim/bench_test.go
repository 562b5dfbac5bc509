package tinyshim

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// BenchmarkStart is fork + exec + exit of /bin/true, directly and through
// the tiny shim (with LISTEN_FDS, so the shim sets LISTEN_PID): the
// difference is what the shim adds to every generation's start. cpu-µs/op
// is the child's own CPU time (user + system, from wait4's rusage): on a
// loaded machine the wall time mostly measures waiting for a CPU.
//
//	go test -run '^$' -bench Start -benchtime 2000x ./internal/tinyshim
func BenchmarkStart(b *testing.B) {
	tr, err := exec.LookPath("true")
	if err != nil {
		b.Skip("no true")
	}
	s, err := Load()
	if err != nil {
		b.Skip(err)
	}
	defer s.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		b.Fatal(err)
	}
	defer devnull.Close()
	files := []*os.File{devnull, devnull, devnull}
	env := []string{"LISTEN_FDS=0"}
	run := func(b *testing.B, c Cmd) {
		var cpu time.Duration
		for i := 0; i < b.N; i++ {
			p, err := os.StartProcess(c.Path, c.Argv, &os.ProcAttr{Env: c.Env, Files: c.Files})
			if err != nil {
				b.Fatal(err)
			}
			st, err := p.Wait()
			if err != nil || !st.Success() {
				b.Fatal(st, err)
			}
			cpu += st.UserTime() + st.SystemTime()
		}
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
	}
	b.Run("direct", func(b *testing.B) {
		run(b, Cmd{Path: tr, Argv: []string{"true"}, Env: env, Files: files})
	})
	b.Run("tinyshim", func(b *testing.B) {
		run(b, s.Command(tr, nil, []string{"true"}, env, files))
	})
}
