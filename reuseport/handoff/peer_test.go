package handoff

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// strangerEnv makes the test binary a handoff receiver of another user: it
// listens on the seqpacket socket named by the variable, prints "ready",
// and prints "got MESSAGE" for every message it receives.
const strangerEnv = "HANDOFF_TEST_STRANGER"

func init() {
	path := os.Getenv(strangerEnv)
	if path == "" {
		return
	}
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			os.Exit(0)
		}
		go func() {
			buf := make([]byte, 512)
			oob := make([]byte, 64)
			for {
				n, _, _, _, err := c.ReadMsgUnix(buf, oob)
				if err != nil {
					return
				}
				fmt.Printf("got %s\n", buf[:n])
				c.Write([]byte("OK"))
			}
		}()
	}
}

// TestHandoffRefusesStranger (issue 13, item 4): a generation hands a
// client's connection over only to a receiver of its own user, and the
// supervisor names a target only to one: another user who bound the handoff
// path gets no message and no descriptor.
func TestHandoffRefusesStranger(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a receiver as another user")
	}
	dir, err := os.MkdirTemp("", "handoff-stranger-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	_ = os.Chmod(dir, 0o777)
	path := filepath.Join(dir, "next.sock")
	// A copy of the test binary the other user can execute (the build
	// directory is private to root).
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	stranger := filepath.Join(dir, "stranger")
	if err := os.WriteFile(stranger, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(stranger, "-test.run=^$")
	cmd.Env = append(os.Environ(), strangerEnv+"="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 4242, Gid: 4242}, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l := <-lines:
		if l != "ready" {
			t.Fatalf("stranger: %s", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stranger never listened")
	}

	// The supervisor side: naming a target.
	err = SetTarget(context.Background(), path, "/run/hotswap/other.sock")
	if err == nil || !strings.Contains(err.Error(), "uid 4242") {
		t.Fatalf("SetTarget to another user's socket: %v", err)
	}
	// The generation side: sending a client's connection.
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	snd := &handoffSender{path: path}
	if res, _ := snd.send(p[0], time.Now()); res != sendFailed {
		t.Fatalf("send to another user's socket: result %d, want failed (kept)", res)
	}
	select {
	case l := <-lines:
		t.Fatalf("the stranger received a message: %s", l)
	case <-time.After(300 * time.Millisecond):
	}
}
