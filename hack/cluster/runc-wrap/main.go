// Command runc-wrap is the OCI runtime binary that hack/cluster-up.sh gives
// containerd: it adjusts a bundle's config.json to what this machine allows,
// then execs the real runc with the same arguments.
//
// Machines without CAP_SYS_RESOURCE (containers, sandboxed VMs) cannot lower
// an OOM score or raise a hard rlimit, and runc fails the whole container
// when the spec asks for either. containerd's CRI asks for both: a negative
// oom_score_adj for the pod sandbox and a large RLIMIT_NOFILE. So:
//   - process.oomScoreAdj is dropped when it is below this process's own
//     (which is what runc would have to lower it from);
//   - every process.rlimits hard/soft value is capped at this process's hard
//     limit for it.
//
// A real node has CAP_SYS_RESOURCE and needs none of this.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

func main() {
	runc := os.Getenv("HOTSWAP_RUNC")
	if runc == "" {
		runc = "/usr/sbin/runc"
	}
	args := os.Args[1:]
	for i, a := range args {
		var bundle string
		switch {
		case (a == "--bundle" || a == "-b") && i+1 < len(args):
			bundle = args[i+1]
		case strings.HasPrefix(a, "--bundle="):
			bundle = strings.TrimPrefix(a, "--bundle=")
		}
		if bundle != "" {
			if err := fixSpec(filepath.Join(bundle, "config.json")); err != nil {
				fmt.Fprintf(os.Stderr, "runc-wrap: %v\n", err)
				os.Exit(1)
			}
		}
	}
	argv := append([]string{runc}, args...)
	err := syscall.Exec(runc, argv, os.Environ())
	fmt.Fprintf(os.Stderr, "runc-wrap: exec %s: %v\n", runc, err)
	os.Exit(1)
}

var rlimitNames = map[string]int{
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC,
	"RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK,
	"RLIMIT_STACK": unix.RLIMIT_STACK, "RLIMIT_AS": unix.RLIMIT_AS,
}

func fixSpec(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read spec: %w", err)
	}
	var spec map[string]any
	if err := json.Unmarshal(raw, &spec); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	proc, ok := spec["process"].(map[string]any)
	if !ok {
		return nil
	}
	if adj, ok := proc["oomScoreAdj"].(float64); ok && int(adj) < ownOOMScoreAdj() {
		delete(proc, "oomScoreAdj")
	}
	if rl, ok := proc["rlimits"].([]any); ok {
		for _, r := range rl {
			m, ok := r.(map[string]any)
			if !ok {
				continue
			}
			res, known := rlimitNames[fmt.Sprint(m["type"])]
			if !known {
				continue
			}
			var lim unix.Rlimit
			if unix.Getrlimit(res, &lim) != nil || lim.Max == unix.RLIM_INFINITY {
				continue
			}
			for _, k := range []string{"hard", "soft"} {
				if v, ok := m[k].(float64); ok && uint64(v) > lim.Max {
					m[k] = lim.Max
				}
			}
		}
	}
	out, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}

func ownOOMScoreAdj() int {
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return n
}
