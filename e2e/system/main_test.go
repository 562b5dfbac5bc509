package system

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hotswap-dev/hotswap/e2e/testbin"

	"github.com/hotswap-dev/hotswap/e2e/netns"
)

// roleEnv tells a re-executed test binary what it is.
const roleEnv = "HOTSWAP_SYSTEM_ROLE"

const (
	roleNetns = "netns" // the test binary, inside its private network namespace
	rolePID1  = "pid1"  // the pod's PID 1: set up mounts and exec hotswap
)

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case rolePID1:
		podInit() // never returns
	case roleNetns:
		if err := netns.LoopbackUp(); err != nil {
			fmt.Fprintln(os.Stderr, "system e2e: bring up lo in the private network namespace:", err)
			os.Exit(1)
		}
		code := m.Run()
		testbin.Cleanup()
		os.Exit(code)
	}
	if os.Geteuid() != 0 {
		// The tests say why they skip.
		os.Exit(m.Run())
	}
	// Run the whole package again in a network namespace of its own.
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), roleEnv+"="+roleNetns)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			os.Exit(ee.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "system e2e: re-run in a private network namespace:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func inPrivateNetns(t *testing.T) {
	t.Helper()
	if os.Getenv(roleEnv) != roleNetns {
		t.Skip("needs root: the test runs in its own network, PID and mount namespaces")
	}
}

// podSpec is what the pod's PID 1 needs to become the container: where the
// volumes come from, who to run as, and the command and environment.
type podSpec struct {
	UID         int               `json:"uid"`
	ReleasesDir string            `json:"releases_dir"` // host dir mounted at ReleasesAt
	ReleasesAt  string            `json:"releases_at"`
	SADir       string            `json:"sa_dir"` // token, ca.crt, namespace
	Argv        []string          `json:"argv"`
	Env         []string          `json:"env"`
	Extra       map[string]string `json:"extra,omitempty"`
}

// saMount is where the kubelet mounts the service-account token.
const saMount = "/var/run/secrets/kubernetes.io/serviceaccount"

// podInit runs as PID 1 of new PID and mount namespaces: it builds the
// container's file system view the way the kubelet would for the chart's
// pod and execs hotswap, which so becomes PID 1.
func podInit() {
	fail := func(what string, err error) {
		fmt.Fprintf(os.Stderr, "pod init: %s: %v\n", what, err)
		os.Exit(121)
	}
	var spec podSpec
	if err := json.Unmarshal([]byte(os.Getenv("HOTSWAP_SYSTEM_POD")), &spec); err != nil {
		fail("read pod spec", err)
	}
	must := func(what string, err error) {
		if err != nil {
			fail(what, err)
		}
	}
	must("make / private", unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""))
	must("mount /proc", unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""))
	// /run is a tmpfs of the pod's own (the image's /run): the emptyDir
	// at /run/hotswap and the token mount point live in it.
	must("mount /run", unix.Mount("tmpfs", "/run", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=4m"))
	must("mkdir /run/hotswap", os.MkdirAll("/run/hotswap", 0o755))
	// the emptyDir, owned by fsGroup 65532
	must("chown /run/hotswap", os.Chown("/run/hotswap", spec.UID, spec.UID))
	must("mkdir token dir", os.MkdirAll(saMount, 0o755))
	must("mount token", unix.Mount(spec.SADir, saMount, "", unix.MS_BIND, ""))
	must("token read-only", unix.Mount("", saMount, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""))
	// the release volume, at the chart's mount path
	parent := filepath.Dir(spec.ReleasesAt)
	must("mount tmpfs for the volume mount point", unix.Mount("tmpfs", parent, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=1m"))
	must("mkdir volume mount point", os.MkdirAll(spec.ReleasesAt, 0o755))
	must("mount release volume", unix.Mount(spec.ReleasesDir, spec.ReleasesAt, "", unix.MS_BIND, ""))
	// readOnlyRootFilesystem: true
	must("read-only root", unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""))
	// runAsUser/runAsGroup 65532; from root to a non-root uid drops every
	// capability (capabilities: drop: [ALL]).
	must("setgroups", syscall.Setgroups([]int{spec.UID}))
	must("setresgid", syscall.Setresgid(spec.UID, spec.UID, spec.UID))
	must("setresuid", syscall.Setresuid(spec.UID, spec.UID, spec.UID))
	must("chdir /", os.Chdir("/"))
	err := syscall.Exec(spec.Argv[0], spec.Argv, spec.Env)
	fail("exec "+spec.Argv[0], err)
}
