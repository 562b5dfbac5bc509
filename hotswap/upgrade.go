package hotswap

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hotswap-dev/hotswap/entrypoint"
	"github.com/hotswap-dev/hotswap/internal/upgradesig"
	"github.com/hotswap-dev/hotswap/reuseport/activation"
)

// In-place upgrade of hotswap itself (docs/upgrade.md). PID 1 verifies a new
// hotswap binary, copies it into a sealed memfd (what was verified is what
// runs), proves that the new code decodes the state it will be handed (a
// self-test child), then execve()s it: same PID, same children, same
// listeners. The state goes through a memfd whose number is in
// HOTSWAP_UPGRADE_STATE; the new process restores it before it binds or
// starts anything.

// UpgradeFormat is the version of the handed-over state. A hotswap decodes
// only a format it knows; the self-test refuses the upgrade otherwise.
const UpgradeFormat = 1

// selfTestEnv makes a hotswap binary decode the state on fd 3, print what
// it is and exit: the proof that it can take over (see SelfTest).
const selfTestEnv = "HOTSWAP_UPGRADE_SELFTEST"

// selfTestTimeout bounds the self-test child.
const selfTestTimeout = 10 * time.Second

// ErrUpgradeRefused wraps every reason an upgrade was refused before the
// exec; the old hotswap stays in charge.
var ErrUpgradeRefused = errors.New("upgrade refused")

// ErrUpgradeBusy wraps a refusal only because the engine was busy (a swap,
// a restart): the same upgrade may succeed later.
var ErrUpgradeBusy = errors.New("busy")

// UpgradeResult is the answer to an upgrade request, sent just before the
// exec (after it, the new hotswap answers `hotswap status`).
type UpgradeResult struct {
	From   string `json:"from"`   // running hotswap version
	To     string `json:"to"`     // the new hotswap's version, from its self-test
	SHA256 string `json:"sha256"` // content that is exec'ed
}

// handover is the state that crosses the exec. Field names are the format:
// add fields freely, bump UpgradeFormat for anything an old reader would
// misread.
type handover struct {
	Format      int           `json:"format"`
	From        string        `json:"from"`
	Listeners   []handoverFD  `json:"listeners,omitempty"`
	Gens        []handoverGen `json:"generations"`
	Serving     int           `json:"serving,omitempty"`
	SwappedIn   int           `json:"swappedIn,omitempty"`
	LastGen     int           `json:"lastGen"`
	Current     Release       `json:"current"`
	Previous    Release       `json:"previous"`
	LastFailed  *Release      `json:"lastFailed,omitempty"`
	SwapID      uint64        `json:"swapID"`
	ExitCode    int           `json:"exitCode"`
	Restarts    uint64        `json:"restarts"`
	Upgrades    int           `json:"upgrades"`
	LastSwap    *SwapResult   `json:"lastSwap,omitempty"`
	LastRejectd *SwapResult   `json:"lastRejected,omitempty"`
	Signals     []int         `json:"signals,omitempty"`
	Orphans     uint64        `json:"orphans,omitempty"`
	Counts      SwapCounts    `json:"counts"`
	// Offered is the last release each source offered (Engine.offered).
	Offered map[string]Release `json:"offered,omitempty"`
	// SHA256 is the content of the binary exec'ed, so the new hotswap
	// knows what it is without hashing itself.
	SHA256 string         `json:"sha256,omitempty"`
	Extra  map[string]any `json:"-"`
}

type handoverFD struct {
	Name string `json:"name"`
	FD   int    `json:"fd"`
}

type handoverGen struct {
	ID         int                   `json:"id"`
	PID        int                   `json:"pid"`
	Release    Release               `json:"release"`
	State      GenState              `json:"state"`
	Started    time.Time             `json:"started"`
	ReadyAt    time.Time             `json:"readyAt,omitzero"`
	DrainStart time.Time             `json:"drainStart,omitzero"`
	StatusText string                `json:"statusText,omitempty"`
	NotifyPath string                `json:"notifyPath,omitempty"`
	NotifyFD   int                   `json:"notifyFD,omitempty"`
	Handoff    string                `json:"handoff,omitempty"`
	Exited     bool                  `json:"exited,omitempty"` // reaped before the exec
	Status     entrypoint.ExitStatus `json:"status"`
}

// decodeHandover is the one decoder of the state, used by the self-test
// and the restore alike, so the self-test proves what the restore needs.
func decodeHandover(r io.Reader) (*handover, error) {
	var h handover
	dec := json.NewDecoder(r)
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("decode upgrade state: %w", err)
	}
	if h.Format != UpgradeFormat {
		return nil, fmt.Errorf("upgrade state format %d, this hotswap reads format %d", h.Format, UpgradeFormat)
	}
	for _, g := range h.Gens {
		if g.ID <= 0 || g.PID <= 0 {
			return nil, fmt.Errorf("upgrade state: generation %d with pid %d", g.ID, g.PID)
		}
		switch g.State {
		case GenStarting, GenServing, GenDraining, GenExited, GenFailed:
		default:
			return nil, fmt.Errorf("upgrade state: generation %d in unknown state %q", g.ID, g.State)
		}
	}
	return &h, nil
}

// SelfTestRequested reports whether this process is an upgrade self-test;
// cmd/hotswap then calls SelfTest and exits with its code, before anything
// else (flag parsing, binding, the reaper).
func SelfTestRequested() bool { return os.Getenv(selfTestEnv) != "" }

// SelfTest decodes the state on the fd named by HOTSWAP_UPGRADE_SELFTEST
// with this binary's code, and prints this hotswap's version and the
// format as one JSON line on stdout. It returns the exit code.
func SelfTest(version string, stdout, stderr io.Writer) int {
	fd, err := strconv.Atoi(os.Getenv(selfTestEnv))
	if err != nil || fd < 3 {
		fmt.Fprintf(stderr, "hotswap upgrade self-test: %s=%q is not a descriptor\n", selfTestEnv, os.Getenv(selfTestEnv))
		return 2
	}
	f := os.NewFile(uintptr(fd), "upgrade-state")
	defer f.Close()
	h, err := decodeHandover(f)
	if err != nil {
		fmt.Fprintln(stderr, "hotswap upgrade self-test:", err)
		return 1
	}
	b, _ := json.Marshal(map[string]any{"version": version, "format": UpgradeFormat, "generations": len(h.Gens)})
	fmt.Fprintln(stdout, string(b))
	return 0
}

// Events of an upgrade on the Run goroutine.
type (
	upgradeReq struct {
		path, sha256 string
		reply        chan upgradeReply
	}
	upgradeReply struct {
		res UpgradeResult
		err error
	}
	// upgradePrepared: the binary is verified, copied and self-tested.
	upgradePrepared struct {
		req upgradeReq
		bin *os.File
		res UpgradeResult
		err error
	}
)

// Upgrade replaces the running hotswap with the binary at path, pinned to
// sha256 (hex; empty: not pinned) when given. It returns once the new
// hotswap was proven able to take over and the exec is imminent, or with an
// error wrapping ErrUpgradeRefused when it was refused; the old hotswap then
// keeps running untouched.
func (e *Engine) Upgrade(ctx context.Context, path, sum string) (UpgradeResult, error) {
	req := upgradeReq{path: path, sha256: strings.ToLower(sum), reply: make(chan upgradeReply, 1)}
	select {
	case e.events <- req:
	case <-e.done:
		return UpgradeResult{}, ErrShuttingDown
	case <-ctx.Done():
		return UpgradeResult{}, ctx.Err()
	}
	select {
	case r := <-req.reply:
		return r.res, r.err
	case <-e.done:
		return UpgradeResult{}, ErrShuttingDown
	case <-ctx.Done():
		return UpgradeResult{}, ctx.Err()
	}
}

func refused(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrUpgradeRefused, fmt.Sprintf(format, a...))
}

// upgradeBusy says why the engine cannot hand over now, or "". A swap,
// a restart or a shutdown in flight has timers and probes whose exact
// moment matters; the operator retries once it is over.
func (e *Engine) upgradeBusy() string {
	switch {
	case e.realReaper() == nil:
		return "this engine does not run on the real runtime"
	case e.stopping:
		return "hotswap is shutting down"
	case e.swap != nil || e.queued != nil:
		return "a swap is running; retry when it is over"
	case e.restartAt != nil:
		return "a restart is pending; retry when it is over"
	case e.serving == nil || e.serving.state != GenServing:
		return "no generation is serving"
	}
	for _, g := range e.gens {
		if g.state == GenStarting {
			return "a generation is starting; retry when it is ready"
		}
	}
	return ""
}

// onUpgradeReq checks the engine can hand over, then prepares the binary in
// the background: verify, copy to a sealed memfd, self-test.
func (e *Engine) onUpgradeReq(req upgradeReq) {
	if why := e.upgradeBusy(); why != "" {
		req.reply <- upgradeReply{err: fmt.Errorf("%w: %w: %s", ErrUpgradeRefused, ErrUpgradeBusy, why)}
		return
	}
	state, err := json.Marshal(e.handover(nil))
	if err != nil {
		req.reply <- upgradeReply{err: refused("encode state: %v", err)}
		return
	}
	e.rt.Background(func() {
		bin, res, err := e.prepareUpgrade(req, state)
		e.post(upgradePrepared{req: req, bin: bin, res: res, err: err})
	})
}

// onUpgradePrepared execs the prepared binary, if the engine still can.
func (e *Engine) onUpgradePrepared(p upgradePrepared, sigs <-chan os.Signal) {
	if p.err == nil {
		if why := e.upgradeBusy(); why != "" {
			p.err = fmt.Errorf("%w: %w: %s", ErrUpgradeRefused, ErrUpgradeBusy, why)
		}
	}
	if p.err != nil {
		if p.bin != nil {
			p.bin.Close()
		}
		e.log.Warn("hotswap upgrade refused; this hotswap stays in charge", "path", p.req.path, "err", p.err)
		p.req.reply <- upgradeReply{err: p.err}
		return
	}
	e.log.Info("upgrading hotswap in place", "from", p.res.From, "to", p.res.To, "sha256", p.res.SHA256, "path", p.req.path)
	p.req.reply <- upgradeReply{res: p.res}
	// The reply goes out on the control connection before the exec
	// closes it; give its goroutine a moment to write.
	time.Sleep(20 * time.Millisecond)
	err := e.execUpgrade(p.bin, p.res.SHA256, sigs)
	// Only a failed execve returns; everything was put back.
	p.bin.Close()
	e.log.Error("hotswap upgrade: exec failed; this hotswap stays in charge", "err", err)
	e.publish(StatusChanged, "hotswap upgrade failed at exec: "+err.Error(), true)
}

// prepareUpgrade verifies the binary like a release (regular, executable,
// not group/world-writable, ELF of this machine, the pinned sha256),
// copies it into a sealed memfd while hashing the copy, and runs the copy's
// self-test on state. The returned memfd is the only thing ever exec'ed.
func (e *Engine) prepareUpgrade(req upgradeReq, state []byte) (*os.File, UpgradeResult, error) {
	res := UpgradeResult{From: e.cfg.HotswapVersion}
	v, err := NewVerifier(VerifyOptions{})
	if err != nil {
		return nil, res, refused("%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), selfTestTimeout)
	defer cancel()
	if err := v.Verify(ctx, Release{Path: req.path, SHA256: req.sha256, Source: "upgrade"}); err != nil {
		return nil, res, refused("%v", err)
	}
	bin, sum, err := sealedCopy(req.path)
	if err != nil {
		return nil, res, refused("copy %s: %v", req.path, err)
	}
	if req.sha256 != "" && sum != req.sha256 {
		// Changed between the check and the copy: the copy is what runs.
		bin.Close()
		return nil, res, refused("%s changed while being copied: sha256 %s, pinned %s", req.path, sum, req.sha256)
	}
	res.SHA256 = sum
	fi, err := bin.Stat()
	if err == nil {
		ef, cerr := checkELF(bin, fi.Size())
		if ef != nil {
			ef.Close()
		}
		err = cerr
	}
	if err != nil {
		bin.Close()
		return nil, res, refused("copy of %s: %v", req.path, err)
	}
	to, err := e.selfTest(ctx, bin, state)
	if err != nil {
		bin.Close()
		return nil, res, refused("the new hotswap failed its self-test: %v", err)
	}
	res.To = to
	return bin, res, nil
}

// sealedCopy copies path into a memfd, seals it against any change and
// returns it with the sha256 of what was copied.
func sealedCopy(path string) (*os.File, string, error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, "", err
	}
	defer src.Close()
	fd, err := unix.MemfdCreate("hotswap-upgrade", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, "", fmt.Errorf("memfd_create: %w", err)
	}
	dst := os.NewFile(uintptr(fd), "hotswap-upgrade")
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(dst, h), src); err != nil {
		dst.Close()
		return nil, "", err
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SEAL|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE); err != nil {
		dst.Close()
		return nil, "", fmt.Errorf("seal: %w", err)
	}
	// execve refuses a file open for writing (ETXTBSY): keep a read-only
	// descriptor of the same sealed inode, and drop the writable one.
	ro, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", fd), os.O_RDONLY|unix.O_CLOEXEC, 0)
	dst.Close()
	if err != nil {
		return nil, "", fmt.Errorf("reopen sealed copy: %w", err)
	}
	return ro, hex.EncodeToString(h.Sum(nil)), nil
}

// selfTest runs bin with HOTSWAP_UPGRADE_SELFTEST=3 and state on fd 3,
// through the Runtime (the one reaper), and returns the version it
// reports. Any other outcome refuses the upgrade.
func (e *Engine) selfTest(ctx context.Context, bin *os.File, state []byte) (string, error) {
	stateFile, err := memfdWith("hotswap-upgrade-selftest", state)
	if err != nil {
		return "", err
	}
	defer stateFile.Close()
	// Its answer goes to a memfd too: a pod's root filesystem is often
	// read-only, and /tmp with it (a temporary file failed every upgrade
	// in the cluster e2e). The memfd is sized and sealed against growth: a
	// candidate that writes without end (`yes`) gets EPERM past the limit
	// instead of filling PID 1's memory until the self-test times out.
	out, err := boundedMemfd("hotswap-upgrade-selftest-out", selfTestAnswerMax)
	if err != nil {
		return "", err
	}
	defer out.Close()
	env := append(append([]string(nil), e.baseEnv...), selfTestEnv+"=3")
	exited := make(chan struct{})
	p, err := e.rt.Start(entrypoint.Spec{
		Path:  "/proc/self/fd/4",
		Argv:  []string{"hotswap-upgrade-selftest"},
		Env:   env,
		Files: []*os.File{nil, out, out, stateFile, bin},
	}, func() { close(exited) })
	if err != nil {
		return "", err
	}
	select {
	case <-exited:
	case <-ctx.Done():
		_ = p.Kill()
		<-exited
		return "", fmt.Errorf("no answer within %s", selfTestTimeout)
	}
	// What was written ends at the shared offset; the rest is the
	// pre-sized zeros.
	var b []byte
	if n, err := out.Seek(0, io.SeekCurrent); err == nil {
		b = make([]byte, n)
		if _, err := out.ReadAt(b, 0); err != nil {
			b = nil
		}
	}
	text := strings.TrimSpace(string(b))
	if st := p.Status(); st.Code() != 0 {
		return "", fmt.Errorf("%s: %s", st, oneLine([]byte(text)))
	}
	var ans struct {
		Version string `json:"version"`
		Format  int    `json:"format"`
	}
	if err := json.Unmarshal([]byte(text), &ans); err != nil || ans.Format != UpgradeFormat {
		return "", fmt.Errorf("unexpected answer %q", oneLine([]byte(text)))
	}
	return ans.Version, nil
}

// selfTestAnswerMax bounds what a self-test may write (its answer is one
// short JSON line).
const selfTestAnswerMax = 64 << 10

// boundedMemfd is an empty memfd that can never hold more than max bytes:
// sized to max and sealed against growing and shrinking.
func boundedMemfd(name string, max int64) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if err := f.Truncate(max); err != nil {
		f.Close()
		return nil, fmt.Errorf("memfd: %w", err)
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_GROW|unix.F_SEAL_SHRINK|unix.F_SEAL_SEAL); err != nil {
		f.Close()
		return nil, fmt.Errorf("memfd seals: %w", err)
	}
	return f, nil
}

// memfdWith is a memfd holding b, positioned at its start.
func memfdWith(name string, b []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// handover is the engine's state as it crosses the exec; fds maps each
// listener and notify socket to the descriptor that carries it (nil: the
// self-test's copy, with no descriptors).
func (e *Engine) handover(fds map[any]int) *handover {
	h := &handover{
		Format: UpgradeFormat, From: e.cfg.HotswapVersion, LastGen: e.lastGen,
		Current: e.current, Previous: e.previous, LastFailed: e.lastFailed,
		SwapID: e.swapID, ExitCode: e.exitCode, Restarts: e.restarts.Load(),
		Offered: e.offered,
	}
	e.mu.Lock()
	h.Upgrades, h.LastSwap, h.LastRejectd = e.status.Upgrades, e.status.LastSwap, e.status.LastRejected
	h.Counts = e.status.Counts
	e.mu.Unlock()
	if e.realReaper() != nil {
		h.Orphans = e.realReaper().Orphans()
	}
	for _, l := range e.listeners {
		h.Listeners = append(h.Listeners, handoverFD{Name: l.Name, FD: fds[l.Listener]})
	}
	if e.serving != nil {
		h.Serving = e.serving.id
	}
	if e.swappedIn != nil {
		h.SwappedIn = e.swappedIn.id
	}
	for _, g := range e.gens {
		hg := handoverGen{
			ID: g.id, PID: g.proc.PID(), Release: g.release, State: g.state,
			Started: g.proc.Started(), ReadyAt: g.readyAt, DrainStart: g.drainStart,
			StatusText: g.statusText, Handoff: g.handoff,
		}
		if g.notify != nil {
			hg.NotifyPath, hg.NotifyFD = g.notify.Path(), fds[g.notify]
		}
		if g.proc.Exited() {
			// Reaped, its exit event still in the inbox: the new hotswap
			// handles it.
			hg.Exited, hg.Status = true, g.proc.Status()
		}
		h.Gens = append(h.Gens, hg)
	}
	return h
}

// execUpgrade hands the engine over and execs bin in place. It returns only
// when execve failed, with everything put back as it was.
func (e *Engine) execUpgrade(bin *os.File, sum string, sigs <-chan os.Signal) (err error) {
	// The mask is per thread and execve keeps the calling thread's: lock
	// the goroutine to its thread so the mask set here is the one that
	// crosses.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var all, old unix.Sigset_t
	for i := range all.Val {
		all.Val[i] = ^uint64(0)
	}
	if err := unix.PthreadSigmask(unix.SIG_SETMASK, &all, &old); err != nil {
		return fmt.Errorf("block signals: %w", err)
	}
	defer func() { _ = unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil) }()

	// From here no child is reaped by us: one that exits stays a zombie
	// for the new hotswap's first wait, with its status.
	release := e.realReaper().Hold()
	defer release()

	fds := map[any]int{}
	var keep []int
	defer func() {
		for _, fd := range keep {
			unix.Close(fd)
		}
	}()
	dup := func(key any) error {
		fd, err := activation.DupFD(key)
		if err != nil {
			return err
		}
		keep = append(keep, fd)
		fds[key] = fd
		return nil
	}
	for _, l := range e.listeners {
		if err := dup(l.Listener); err != nil {
			return fmt.Errorf("listener %s: %w", l.Name, err)
		}
	}
	for _, g := range e.gens {
		if g.notify != nil {
			if err := dup(g.notify); err != nil {
				return fmt.Errorf("generation %d notify socket: %w", g.id, err)
			}
		}
	}
	// Signals caught and not handled yet cross in the state (drained as
	// late as possible), and the new hotswap handles them first. What
	// arrives from here until the new Go runtime installed its handlers is
	// lost: the runtime unblocks SIGTERM & co. before it installs them, and
	// PID 1 drops a signal with the default action (docs/upgrade.md).
	var pending []int
	for drained := false; !drained; {
		select {
		case s := <-sigs:
			if sig, ok := s.(syscall.Signal); ok {
				pending = append(pending, int(sig))
			}
		default:
			drained = true
		}
	}
	defer func() {
		for _, s := range pending { // exec failed: handle them here after all
			e.onSignal(syscall.Signal(s))
		}
	}()

	h := e.handover(fds)
	h.Signals, h.SHA256 = pending, sum
	e.log.Debug("upgrade: handing over", "signals", pending, "listeners", len(h.Listeners), "generations", len(h.Gens))
	b, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	stateFile, err := memfdWith("hotswap-upgrade-state", b)
	if err != nil {
		return err
	}
	defer stateFile.Close()
	stateFD, err := activation.DupFD(stateFile)
	if err != nil {
		return err
	}
	keep = append(keep, stateFD)
	// Exactly these descriptors cross; everything else hotswap holds is
	// close-on-exec (Go opens all its files so).
	for _, fd := range keep {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			return fmt.Errorf("keep fd %d: %w", fd, err)
		}
	}
	env := []string{upgradesig.Env + "=" + strconv.Itoa(stateFD)}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, upgradesig.Env+"=") {
			env = append(env, kv)
		}
	}
	return execBinary(bin, os.Args, env)
}

// execBinary is the one place hotswap execs a new hotswap: the sealed copy
// it verified and self-tested, by its descriptor, never by path.
func execBinary(bin *os.File, argv, env []string) error {
	sc, err := bin.SyscallConn()
	if err != nil {
		return err
	}
	var fd uintptr
	if err := sc.Control(func(u uintptr) { fd = u }); err != nil {
		return err
	}
	path := "/proc/self/fd/" + strconv.Itoa(int(fd))
	return fmt.Errorf("execve %s: %w", path, syscall.Exec(path, argv, env))
}

// realReaper is the reaper under the real Runtime, nil under another: the
// exec needs it held, which no Runtime method expresses (an exec is no
// side effect a fake could stand in for).
func (e *Engine) realReaper() *entrypoint.Reaper {
	if r, ok := e.rt.(*osRuntime); ok {
		return r.reaper
	}
	return nil
}

// offerRetry is how often an offered upgrade retries while the engine is
// busy, and offerPatience how long it keeps trying.
const (
	offerRetry    = 500 * time.Millisecond
	offerPatience = 10 * time.Minute
)

// OfferUpgrade is Upgrade for a source (a manifest's hotswap: field): it
// returns at once. A binary whose content is the running hotswap's is
// ignored, so the new hotswap, reading the same manifest, does not upgrade
// again. While a swap runs (often the one the same manifest started) it
// waits and retries.
func (e *Engine) OfferUpgrade(path, sum string) {
	go func() {
		want := strings.ToLower(sum)
		if want == "" {
			got, err := fileSHA256(path)
			if err != nil {
				e.log.Warn("hotswap upgrade offered by a source: cannot read it; this hotswap stays in charge", "path", path, "err", err)
				return
			}
			want = got
		}
		if self := e.selfSHA256(); want == self {
			e.log.Debug("hotswap upgrade offered by a source is the running hotswap; nothing to do", "path", path)
			return
		}
		key := path + "@" + want
		if p := e.offeredUpgrade.Swap(&key); p != nil && *p == key {
			return // under way, or refused: tried again only once it changes
		}
		deadline := time.Now().Add(offerPatience)
		for {
			_, err := e.Upgrade(context.Background(), path, sum)
			if err == nil || !errors.Is(err, ErrUpgradeBusy) || time.Now().After(deadline) {
				if err != nil && !errors.Is(err, ErrShuttingDown) {
					e.Reject("hotswap-upgrade", err.Error())
				}
				return
			}
			select {
			case <-time.After(offerRetry):
			case <-e.done:
				return
			}
		}
	}()
}

// selfSHA256 is the content hash of the running hotswap: handed over by
// the upgrade that exec'ed it, else hashed from /proc/self/exe once.
func (e *Engine) selfSHA256() string {
	e.selfSumOnce.Do(func() {
		if e.selfSum != "" {
			return
		}
		e.selfSum, _ = fileSHA256("/proc/self/exe")
	})
	return e.selfSum
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
