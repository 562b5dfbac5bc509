package main

import (
	"bytes"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hotswap-dev/hotswap/hotswap"
)

func TestNearMissSubcommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" runs the command
	}{
		{[]string{"sawp"}, "did you mean `hotswap swap`"},
		{[]string{"stauts", "-o", "json"}, "did you mean `hotswap status`"},
		{[]string{"--", "sawp"}, ""},  // after --, always the command
		{[]string{"./sawp"}, ""},      // a path
		{[]string{"true"}, ""},        // on $PATH
		{[]string{"nginx-debug"}, ""}, // far from every subcommand
		{[]string{"--drain-timeout", "3s", "sawp"}, "did you mean `hotswap swap`"},
	} {
		root := newRootCommand()
		if err := root.ParseFlags(tc.args); err != nil {
			t.Fatal(err)
		}
		err := nearMissSubcommand(root, root.Flags().Args())
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestKillHelp(t *testing.T) {
	for _, a := range []string{"-h", "--help"} {
		var out, errb bytes.Buffer
		if code := killMain([]string{a}, &out, &errb); code != 0 || !strings.Contains(out.String(), "usage: kill") {
			t.Errorf("kill %s: code %d, out %q, err %q", a, code, out.String(), errb.String())
		}
	}
}

func TestClientRuntimeDir(t *testing.T) {
	t.Setenv("HOTSWAP_RUNTIME_DIR", "/srv/run")
	t.Setenv("HOTSWAP_CONTROL_SOCKET", "")
	cmd := newStatusCommand()
	if err := cmd.ParseFlags(nil); err != nil {
		t.Fatal(err)
	}
	if got := cmd.Flag("runtime-dir").Value.String(); got != "/srv/run" {
		t.Fatalf("--runtime-dir from the environment: %q", got)
	}
	cf := clientFlags{runtimeDir: "/srv/run"}
	if p := cf.path(); p != "/srv/run/control.sock" {
		t.Fatalf("path %q", p)
	}
	cf.socket = "/x.sock"
	if p := cf.path(); p != "/x.sock" {
		t.Fatalf("--control-socket must win: %q", p)
	}
}

func TestPrintStatusForHumans(t *testing.T) {
	now := time.Date(2026, 11, 28, 2, 0, 0, 0, time.UTC)
	t.Run("starting", func(t *testing.T) {
		var b bytes.Buffer
		printStatus(&b, &hotswap.Status{Phase: hotswap.PhaseStarting, Generations: []hotswap.GenerationStatus{
			{Generation: 1, PID: 7, Version: "v1", Path: "/releases/v1/server", State: hotswap.GenStarting, Started: now.Add(-35 * time.Second), WaitingFor: "READY=1 on NOTIFY_SOCKET"},
		}}, now)
		s := b.String()
		for _, want := range []string{"serving: nothing yet", "starting: generation 1, version v1, pid 7, /releases/v1/server: waiting for READY=1 on NOTIFY_SOCKET for 35s"} {
			if !strings.Contains(s, want) {
				t.Errorf("lacks %q:\n%s", want, s)
			}
		}
		if strings.Contains(s, "generation 0") || strings.Contains(s, "pid 0") {
			t.Errorf("a starting pod shown as generation 0 / pid 0:\n%s", s)
		}
	})
	t.Run("serving", func(t *testing.T) {
		var b bytes.Buffer
		printStatus(&b, &hotswap.Status{
			Phase: hotswap.PhaseServing, Generation: 2, Version: "v2", PID: 9, Swaps: 3,
			Counts: hotswap.SwapCounts{Succeeded: 1, Failed: 1, Rejected: 1},
			Generations: []hotswap.GenerationStatus{
				{Generation: 2, PID: 9, Version: "v2", Path: "/releases/v2/server", State: hotswap.GenServing, Started: now.Add(-3*time.Hour - 4*time.Minute)},
			},
			LastSwap: &hotswap.SwapResult{ID: 3, Result: hotswap.ResultSucceeded, Trigger: "source:watch:/releases/current", Started: now.Add(-2 * time.Minute), Duration: 1204 * time.Millisecond, ToVersion: "v2"},
		}, now)
		s := b.String()
		for _, want := range []string{
			"serving: generation 2, version v2, pid 9, /releases/v2/server, up 3h4m",
			"swaps: 3 (1 succeeded, 1 failed, 1 rejected, 0 canceled)",
			"last swap: #3 succeeded by source:watch:/releases/current, 2m0s ago",
			"took 1.204s",
		} {
			if !strings.Contains(s, want) {
				t.Errorf("lacks %q:\n%s", want, s)
			}
		}
	})
}

// fakeControl answers status with how many swaps it was asked for, and
// never answers a swap: the client's --timeout always runs out.
func fakeControl(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "control.sock")
	ln, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var swaps atomic.Uint64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var req hotswap.ControlRequest
				if err := json.NewDecoder(c).Decode(&req); err != nil {
					return
				}
				if req.Op == "swap" {
					swaps.Add(1)
					time.Sleep(time.Second)
					return
				}
				st := hotswap.Status{Phase: hotswap.PhaseServing, Generation: 1, Swaps: swaps.Load()}
				if st.Swaps > 0 {
					st.Phase = hotswap.PhaseSwapping
				}
				b, _ := json.Marshal(hotswap.ControlResponse{Status: &st})
				_, _ = c.Write(append(b, '\n'))
			}()
		}
	}()
	return p
}

func TestSwapTimeoutSaysTheSwapWasRequested(t *testing.T) {
	cmd := newSwapCommand()
	cmd.SetArgs([]string{"--control-socket", fakeControl(t), "--timeout", "100ms"})
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	err := cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), "the swap was requested (swap #1, phase Swapping)") || !strings.Contains(err.Error(), "hotswap status") {
		t.Fatalf("swap past --timeout: %v", err)
	}
	if strings.Contains(err.Error(), "context deadline exceeded") {
		t.Fatalf("a bare context error: %v", err)
	}
}
