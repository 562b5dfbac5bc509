package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// env is the cluster the tests run against, read from WORKDIR/env.
var env struct {
	workDir    string
	kubeconfig string
	kubeBin    string
	gateway    string
	apiPort    string
	node       string
	image      string // the hotswap image, as pods name it
}

// skipReason is set when the machine cannot run a cluster; setupErr when
// starting it failed for another reason (every test then fails with it).
var skipReason string
var setupErr error

const imageRef = "localhost/hotswap:e2e-cluster"

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		skipReason = "-short: the real-cluster e2e takes minutes"
		return m.Run()
	}
	env.workDir = os.Getenv("HOTSWAP_CLUSTER_WORKDIR")
	if env.workDir == "" {
		env.workDir = filepath.Join(os.TempDir(), "hotswap-e2e-cluster")
	}
	// One cluster per machine (a bridge, the kubelet's ports): a second
	// run, e.g. `go test` in another checkout, waits instead of tearing
	// this one down. The lock goes with the process.
	if err := lockMachine(env.workDir + ".lock"); err != nil {
		fmt.Fprintf(os.Stderr, "cluster: %v\n", err)
		return 1
	}
	// A run killed by a timeout cannot tear down: the next one does.
	if err := script("cluster-down.sh", env.workDir); err != nil {
		fmt.Fprintf(os.Stderr, "cluster: tearing down a previous run's cluster: %v\n", err)
	}
	// Tear down on SIGINT/SIGTERM too (Ctrl-C of go test).
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Fprintln(os.Stderr, "cluster: interrupted: tearing down")
		_ = script("cluster-down.sh", env.workDir)
		os.Exit(130)
	}()

	setupErr = setUp()
	code := m.Run()
	if os.Getenv("HOTSWAP_CLUSTER_KEEP") == "1" && setupErr == nil && skipReason == "" {
		fmt.Fprintf(os.Stderr, "cluster: left up (HOTSWAP_CLUSTER_KEEP=1): KUBECONFIG=%s; hack/cluster-down.sh %s\n", env.kubeconfig, env.workDir)
		return code
	}
	if err := script("cluster-down.sh", env.workDir); err != nil {
		fmt.Fprintf(os.Stderr, "cluster: teardown: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func setUp() error {
	start := time.Now()
	if os.Geteuid() != 0 {
		skipReason = "not root: a kubelet and containerd need root (run as root, e.g. through hack/test.sh)"
		return nil
	}
	// The image first: hack/image.sh sets podman up if needed.
	out, err := scriptOutput("image.sh", "-t", imageRef)
	if err != nil {
		return fmt.Errorf("build the image: %w", err)
	}
	env.image = lastLine(out)
	err = script("cluster-up.sh", env.workDir, "--image", env.image)
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 3 {
		skipReason = "this machine cannot run a Kubernetes node (hack/cluster-up.sh said why above)"
		return nil
	}
	if err != nil {
		return fmt.Errorf("hack/cluster-up.sh: %w (logs in %s/logs)", err, env.workDir)
	}
	vars, err := readEnvFile(filepath.Join(env.workDir, "env"))
	if err != nil {
		return err
	}
	env.kubeconfig, env.kubeBin, env.gateway = vars["KUBECONFIG"], vars["KUBE_BIN"], vars["GATEWAY"]
	env.apiPort, env.node = vars["APISERVER_PORT"], vars["NODE"]
	fmt.Fprintf(os.Stderr, "cluster: up with image %s in %v\n", env.image, time.Since(start).Round(time.Millisecond))
	return nil
}

// needCluster skips or fails t when there is no cluster to test against.
func needCluster(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	if setupErr != nil {
		t.Fatalf("no cluster: %v", setupErr)
	}
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return strings.TrimSuffix(filepath.Dir(file), filepath.FromSlash("/e2e/cluster"))
}

// script runs hack/NAME with its output going to the test's stderr.
func script(name string, args ...string) error {
	cmd := exec.Command(filepath.Join(repoRoot(), "hack", name), args...)
	cmd.Dir = repoRoot()
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// scriptOutput runs hack/NAME and returns its stdout (stderr goes to the test's).
func scriptOutput(name string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(repoRoot(), "hack", name), args...)
	cmd.Dir = repoRoot()
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	return string(out), err
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func readEnvFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cluster env: %w", err)
	}
	vars := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			vars[k] = v
		}
	}
	return vars, nil
}

// ctxFor is a context that ends after d or when the test ends.
func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// lockFile holds the machine lock for the life of the process (a package
// variable: a collected *os.File would close the descriptor and drop it).
var lockFile *os.File

// lockMachine takes an exclusive lock on path, waiting (and saying so) while
// another test run holds it.
func lockMachine(path string) error {
	var err error
	lockFile, err = os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	f := lockFile
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
		return nil // held until the process exits
	}
	fmt.Fprintf(os.Stderr, "cluster: another run holds %s; waiting for it\n", path)
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	return nil
}
