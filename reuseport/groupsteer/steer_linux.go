package groupsteer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

const (
	soAttachReuseportCBPF = 51         // SO_ATTACH_REUSEPORT_CBPF
	soDetachReuseportBPF  = 68         // SO_DETACH_REUSEPORT_BPF
	skfAdRandom           = 56         // SKF_AD_RANDOM
	skfAdOff              = 0xfffff000 // SKF_AD_OFF (-0x1000)
)

// ErrOff is wrapped by the reasons steering does not apply.
var ErrOff = errors.New("reuseport steering off")

// Steerer steers the SO_REUSEPORT groups of a server it did not write from
// one generation to the next. Its methods may be called from any goroutine;
// they serialize on one lock. The zero value is not usable: see New.
type Steerer struct {
	log *slog.Logger

	mu     sync.Mutex
	groups map[key]*group
	tag    int // the last generation tag handed out
	euid   uint32
	said   map[string]bool // reasons already logged, said once
	closed bool
	// shrinkBlind counts shrinks that could not keep a program right
	// throughout (for tests).
	shrinkBlind int
}

// group is hotswap's model of one group's socket array: who sits at each
// index. Fillers are interchangeable, and so are the sockets of one
// generation, so the model keeps classes, not sockets: that is all the
// kernel's moves make predictable, and all a program needs.
type group struct {
	key     key
	slots   []int // per index: 0 = one of our fillers, else a generation tag
	fillers []filler
	inodes  map[uint32]int // a generation socket's inode → its tag
}

// filler is one of hotswap's own members of a group: bound and listening
// with a socket filter that drops every packet, so it never queues a
// connection. It is there to be a member (only a member attaches a
// program) and to be what the kernel moves into the hole a leaving
// socket makes.
type filler struct {
	fd    int
	inode uint32
}

// New returns a Steerer; log receives one line per reason steering does
// not apply (each said once) and per group it gives up on.
func New(log *slog.Logger) *Steerer {
	if log == nil {
		log = slog.Default()
	}
	return &Steerer{log: log, groups: map[key]*group{}, euid: uint32(os.Geteuid()), said: map[string]bool{}}
}

// Check reports whether steering can work in this network namespace: the
// listening sockets can be read through sock_diag and a socket can carry a
// reuseport program. It is cheap; call it once at start-up to say whether
// swaps will be reset-free.
func Check() error {
	if _, err := listeners(); err != nil {
		return fmt.Errorf("%w: cannot list listening sockets: %v", ErrOff, err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrOff, err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return fmt.Errorf("%w: SO_REUSEPORT: %v", ErrOff, err)
	}
	if err := attach(fd, program([]int{0})); err != nil {
		return fmt.Errorf("%w: the kernel takes no reuseport program (SO_ATTACH_REUSEPORT_CBPF): %v", ErrOff, err)
	}
	return nil
}

// Mark is the set of listening sockets at one moment: taken right before
// a generation starts, it tells that generation's sockets from the others
// once it is ready.
type Mark struct {
	inodes map[uint32]bool
	err    error
}

// Mark brings the model up to date with what the kernel shows, takes over
// the groups hotswap does not steer yet when quiet says only the serving
// generation is alive (its sockets are then the whole group), and returns
// the listening sockets as they are now. Call it right before a new
// generation starts.
func (s *Steerer) Mark(quiet bool) Mark {
	s.mu.Lock()
	defer s.mu.Unlock()
	ls, err := listeners()
	if err != nil {
		s.sayOnce("sock_diag", "cannot list listening sockets; swaps reset what the old generation's sockets hold (as without steering)", err)
		return Mark{err: err}
	}
	byKey := s.byKey(ls)
	for k, g := range s.groups {
		if err := s.reconcile(g, byKey[k]); err != nil {
			s.drop(g, err)
			continue
		}
		if err := s.shrink(g); err != nil {
			s.drop(g, err)
		}
	}
	if quiet {
		// Read again: a group given up above no longer holds our fillers.
		if ls, err = listeners(); err != nil {
			return Mark{err: err}
		}
		for k, ms := range s.byKey(ls) {
			if s.groups[k] == nil {
				s.adopt(k, ms)
			}
		}
	}
	ls, err = listeners()
	m := Mark{inodes: map[uint32]bool{}, err: err}
	for _, l := range ls {
		m.inodes[l.inode] = true
	}
	return m
}

// Cutover steers every new connection of each group the new generation
// joined (its sockets are the ones that were not there at m) to the new
// generation's sockets, and returns what to wait for before the old
// generation may be told to stop. Call it once the new generation is
// ready. A group it cannot steer keeps the kernel's hash (as without
// steering), and the reason is logged.
func (s *Steerer) Cutover(m Mark) *Waiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := &Waiter{old: map[uint32]bool{}, ports: map[uint16]bool{}}
	if m.err != nil {
		return w
	}
	ls, err := listeners()
	if err != nil {
		s.sayOnce("sock_diag", "cannot list listening sockets; swaps reset what the old generation's sockets hold (as without steering)", err)
		return w
	}
	s.tag++
	tag := s.tag
	byKey := s.byKey(ls)
	for k, g := range s.groups {
		ms := byKey[k]
		var fresh []listener
		for _, l := range ms {
			if !m.inodes[l.inode] {
				fresh = append(fresh, l)
			}
		}
		if len(fresh) == 0 {
			continue // the new generation does not listen here: the group ends with the old one
		}
		if err := s.cutover(g, ms, fresh, tag); err != nil {
			s.drop(g, err)
			continue
		}
		w.ports[k.port] = true
		for ino, t := range g.inodes {
			if t != tag {
				w.old[ino] = true
			}
		}
	}
	if len(w.ports) > 0 {
		// Snapshot the handshakes in flight once the program is in place:
		// only these can still end on an old socket.
		if reqs, err := requests(w.ports); err == nil {
			w.reqs = reqs
		}
	}
	return w
}

// cutover appends the new generation's sockets to g's model, compacts the
// fillers, adds enough fillers to take every old socket's place and
// attaches a program that picks among the new generation's indices.
func (s *Steerer) cutover(g *group, ms, fresh []listener, tag int) error {
	if err := s.reconcile(g, without(ms, fresh)); err != nil {
		return err
	}
	for _, l := range fresh {
		if l.uid != s.euid {
			return fmt.Errorf("the new generation's socket has uid %d, hotswap runs as %d: only a member of the group (same uid) can steer it", l.uid, s.euid)
		}
	}
	for _, l := range fresh {
		g.slots = append(g.slots, tag)
		g.inodes[l.inode] = tag
	}
	// While the program still picks the old generation, closing a filler
	// moves the last member — a new socket, picked by nobody yet — into its
	// place. Done for all fillers at once, the result does not depend on
	// which filler sat where, which the model does not know.
	if f := len(g.fillers); f > 0 && f <= len(fresh) && g.fillersBefore(len(g.slots)-len(fresh)) {
		for _, fl := range g.fillers {
			unix.Close(fl.fd)
		}
		g.fillers = nil
		for i := range g.slots {
			if g.slots[i] == 0 {
				g.slots[i] = tag
			}
		}
		g.slots = g.slots[:len(g.slots)-f]
	}
	// One filler per old socket at the tail: each old socket that leaves
	// takes one from the tail into its hole, so the new generation's
	// indices never move.
	old := 0
	for _, t := range g.slots {
		if t != 0 && t != tag {
			old++
		}
	}
	for range max(old, 1) {
		if err := s.addFiller(g); err != nil {
			return err
		}
	}
	return s.attachTo(g, tag)
}

// shrink closes the fillers of a group that holds one generation and more
// fillers than that generation has sockets (they pile up when generations
// shrink, where cutover cannot close them), leaving one. Its sockets
// below index n (their count) are never moved by the closes (the last
// member always sits at n or above until the end), so a program picking
// only them stays right throughout; at the end the generation holds
// indices 0..n-1.
func (s *Steerer) shrink(g *group) error {
	tags := map[int]bool{}
	for _, t := range g.inodes {
		tags[t] = true
	}
	n := len(g.inodes)
	if len(tags) != 1 || len(g.fillers) <= max(n, 1) {
		return nil
	}
	var tag int
	for t := range tags {
		tag = t
	}
	var stay []int
	for i, c := range g.slots[:n] {
		if c == tag {
			stay = append(stay, i)
		}
	}
	if len(stay) > 0 {
		if err := attach(g.fillers[0].fd, program(stay)); err != nil {
			return fmt.Errorf("attach the reuseport program: %w", err)
		}
	} else {
		// Every socket of it sits above the fillers: while they close,
		// its indices move, and a SYN may land on a filler (a delay of
		// a retransmission, never a reset).
		s.shrinkBlind++
	}
	for _, f := range g.fillers {
		unix.Close(f.fd)
	}
	g.fillers = nil
	g.slots = g.slots[:n]
	for i := range g.slots {
		g.slots[i] = tag
	}
	if err := s.addFiller(g); err != nil {
		return err
	}
	return s.attachTo(g, tag)
}

// reconcile applies to g's model what happened since it was last looked
// at: generations whose sockets have all left. Anything else (part of a
// generation gone, a socket nobody knows) makes the indices unknowable.
func (s *Steerer) reconcile(g *group, ms []listener) error {
	seen := map[uint32]bool{}
	for _, l := range ms {
		seen[l.inode] = true
	}
	for _, f := range g.fillers {
		if !seen[f.inode] {
			return fmt.Errorf("a filler socket left the group")
		}
		delete(seen, f.inode)
	}
	present, total := map[int]int{}, map[int]int{}
	for ino, t := range g.inodes {
		total[t]++
		if seen[ino] {
			present[t]++
			delete(seen, ino)
		}
	}
	if len(seen) > 0 {
		return fmt.Errorf("%d socket(s) joined the group from outside a swap", len(seen))
	}
	for t, n := range total {
		switch present[t] {
		case n:
		case 0:
			if err := g.removeAll(t, n); err != nil {
				return err
			}
			for ino, tt := range g.inodes {
				if tt == t {
					delete(g.inodes, ino)
				}
			}
		default:
			return fmt.Errorf("a generation closed %d of its %d sockets", n-present[t], n)
		}
	}
	if len(g.inodes) == 0 {
		return errGone
	}
	return nil
}

var errGone = errors.New("no server socket left")

// removeAll applies the departure of all n sockets of generation t. Each
// departure moves the array's last member into the hole; with n fillers at
// the tail (which cutover put there), any order gives the same classes.
func (g *group) removeAll(t, n int) error {
	if len(g.slots) < n {
		return fmt.Errorf("model out of step")
	}
	for _, c := range g.slots[len(g.slots)-n:] {
		if c != 0 {
			return fmt.Errorf("generation sockets left while the array's tail held no fillers")
		}
	}
	for i, c := range g.slots {
		if c == t {
			g.slots[i] = 0
		}
	}
	g.slots = g.slots[:len(g.slots)-n]
	return nil
}

// fillersBefore reports whether every filler sits below index end.
func (g *group) fillersBefore(end int) bool {
	for i, c := range g.slots {
		if c == 0 && i >= end {
			return false
		}
	}
	return true
}

// adopt takes over a group hotswap does not steer yet, whose members are
// all the serving generation's: they are then the whole array, in some
// order, and a program picking indices 0..n-1 picks exactly them.
func (s *Steerer) adopt(k key, ms []listener) {
	for _, l := range ms {
		if l.uid != s.euid {
			s.sayOnce("uid "+k.String(), fmt.Sprintf("the server's socket %s has uid %d, hotswap runs as %d: only a member of the group (same uid) can steer it; swaps reset what the old generation's sockets hold (as without steering)", k, l.uid, s.euid), nil)
			return
		}
	}
	if k.dev != 0 {
		s.sayOnce("dev "+k.String(), fmt.Sprintf("the server's socket %s is bound to a device: not steered", k), nil)
		return
	}
	s.tag++
	g := &group{key: k, inodes: map[uint32]int{}}
	for _, l := range ms {
		g.slots = append(g.slots, s.tag)
		g.inodes[l.inode] = s.tag
	}
	if err := s.addFiller(g); err != nil {
		s.drop(g, err)
		return
	}
	if err := s.attachTo(g, s.tag); err != nil {
		s.drop(g, err)
		return
	}
	s.groups[k] = g
	s.log.Info("steering the server's SO_REUSEPORT group: swaps will not reset queued connections", "addr", k.String(), "sockets", len(ms))
}

// drop gives up steering g: the program goes (the kernel hashes over the
// group again, as without steering) and so do the fillers.
func (s *Steerer) drop(g *group, why error) {
	if len(g.fillers) > 0 {
		_ = unix.SetsockoptInt(g.fillers[0].fd, unix.SOL_SOCKET, soDetachReuseportBPF, 0)
	}
	for _, f := range g.fillers {
		unix.Close(f.fd)
	}
	g.fillers = nil
	delete(s.groups, g.key)
	if errors.Is(why, errGone) {
		return
	}
	s.log.Warn("reuseport steering: giving up on a group until the next swap; this swap may reset what the old generation's sockets hold (as without steering)", "addr", g.key.String(), "why", why.Error())
}

// addFiller binds one filler into g (it lands at the tail of the array).
func (s *Steerer) addFiller(g *group) error {
	fd, err := bindFiller(g.key)
	if err != nil {
		return fmt.Errorf("join the group at %s: %w", g.key, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return err
	}
	g.fillers = append(g.fillers, filler{fd: fd, inode: uint32(st.Ino)})
	g.slots = append(g.slots, 0)
	return nil
}

// bindFiller binds a socket that joins k's group and drops every packet.
// The filter is attached before listen(2): from the moment it is a member
// the hash may pick it, and a SYN it drops is only retransmitted by the
// client, never reset.
func bindFiller(k key) (int, error) {
	fd, err := unix.Socket(int(k.family), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return -1, err
	}
	var sa unix.Sockaddr
	if k.family == unix.AF_INET {
		a := &unix.SockaddrInet4{Port: int(k.port)}
		copy(a.Addr[:], k.addr[:4])
		sa = a
	} else {
		v := 0
		if k.v6only {
			v = 1
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, v); err != nil {
			return -1, err
		}
		sa = &unix.SockaddrInet6{Port: int(k.port), Addr: k.addr}
	}
	drop := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: 1, Filter: &drop[0]}); err != nil {
		return -1, fmt.Errorf("SO_ATTACH_FILTER: %w", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return -1, fmt.Errorf("bind: %w (a server socket of another uid, or without SO_REUSEPORT)", err)
	}
	if err := unix.Listen(fd, 1); err != nil {
		return -1, fmt.Errorf("listen: %w", err)
	}
	ok = true
	return fd, nil
}

// attachTo replaces g's program (atomically) with one that picks
// uniformly among the indices of generation tag.
func (s *Steerer) attachTo(g *group, tag int) error {
	var idx []int
	for i, c := range g.slots {
		if c == tag {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 || len(g.fillers) == 0 {
		return fmt.Errorf("nothing to steer to")
	}
	if err := attach(g.fillers[0].fd, program(idx)); err != nil {
		return fmt.Errorf("attach the reuseport program: %w", err)
	}
	return nil
}

func attach(fd int, prog []unix.SockFilter) error {
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, soAttachReuseportCBPF,
		&unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
}

// program is a classic BPF reuseport program returning one of idx at
// random: A = random % len(idx), then a table from A to an index.
func program(idx []int) []unix.SockFilter {
	p := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: uint32(skfAdOff + skfAdRandom)},
		{Code: unix.BPF_ALU | unix.BPF_MOD | unix.BPF_K, K: uint32(len(idx))},
	}
	for i, x := range idx[:len(idx)-1] {
		p = append(p,
			unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: uint32(i), Jt: 0, Jf: 1},
			unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: uint32(x)})
	}
	return append(p, unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: uint32(idx[len(idx)-1])})
}

// byKey groups the listeners by reuseport group, leaving out the sockets
// of other users' groups only where hotswap has no group there.
func (s *Steerer) byKey(ls []listener) map[key][]listener {
	out := map[key][]listener{}
	for _, l := range ls {
		out[l.key] = append(out[l.key], l)
	}
	return out
}

func without(ms, fresh []listener) []listener {
	var out []listener
	for _, l := range ms {
		if !slices.ContainsFunc(fresh, func(f listener) bool { return f.inode == l.inode }) {
			out = append(out, l)
		}
	}
	return out
}

func (s *Steerer) sayOnce(topic, msg string, err error) {
	if s.said[topic] {
		return
	}
	s.said[topic] = true
	if err != nil {
		s.log.Warn(msg, "err", err)
	} else {
		s.log.Warn(msg)
	}
}

// Close gives up every group: programs detached, fillers closed.
func (s *Steerer) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.groups {
		s.drop(g, errGone)
	}
	s.closed = true
}

// Waiter is what a cutover left to wait for: the old generation's sockets
// must hold no connection (accept queue) and no handshake that started
// before the cutover may still be in flight.
type Waiter struct {
	old   map[uint32]bool
	ports map[uint16]bool
	reqs  map[request]bool
}

// Steered reports whether any group was steered (there is something to
// wait for).
func (w *Waiter) Steered() bool { return w != nil && len(w.ports) > 0 }

// Wait blocks until nothing is left on the old sockets, ctx ends, or
// timeout passes; it returns nil when nothing is left, else why it gave up.
func (w *Waiter) Wait(ctx context.Context, timeout time.Duration) error {
	if !w.Steered() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		left, err := w.left()
		if err != nil {
			return err
		}
		if left == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %s still %s", timeout, left)
		case <-tick.C:
		}
	}
}

// left says what is still queued on, or in flight to, the old sockets.
func (w *Waiter) left() (string, error) {
	if len(w.reqs) > 0 {
		now, err := requests(w.ports)
		if err != nil {
			return "", err
		}
		for r := range w.reqs {
			if !now[r] {
				delete(w.reqs, r)
			}
		}
		if len(w.reqs) > 0 {
			return fmt.Sprintf("%d handshake(s) in flight", len(w.reqs)), nil
		}
	}
	ls, err := listeners()
	if err != nil {
		return "", err
	}
	queued := 0
	for _, l := range ls {
		if w.old[l.inode] {
			queued += int(l.rqueue)
		}
	}
	if queued > 0 {
		return fmt.Sprintf("%d connection(s) queued on the old sockets", queued), nil
	}
	return "", nil
}
