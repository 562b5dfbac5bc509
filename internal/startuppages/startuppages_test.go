package startuppages

import (
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// exeMappings returns the smaps entries of the test binary's own file.
func exeMappings(t *testing.T) []mapping {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/exe", &st); err != nil {
		t.Fatal(err)
	}
	all, err := readSmaps()
	if err != nil {
		t.Fatal(err)
	}
	var out []mapping
	for _, m := range all {
		if m.inode == st.Ino && m.dev == devString(st.Dev) {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		t.Fatal("no mapping of /proc/self/exe in /proc/self/smaps")
	}
	return out
}

func rssKB(ms []mapping, readOnly bool) int {
	n := 0
	for _, m := range ms {
		if !readOnly || !strings.ContainsRune(m.perms, 'w') {
			n += m.rssKB
		}
	}
	return n
}

// Release unmaps the executable's read-only pages, and the program keeps
// running from the page cache.
func TestReleaseDropsExecutablePages(t *testing.T) {
	before := rssKB(exeMappings(t), true)
	n, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	after := rssKB(exeMappings(t), true)
	t.Logf("read-only executable pages resident: %d kB before, %d kB after; Release reported %d kB", before, after, n)
	if n == 0 || after >= before {
		t.Errorf("released %d kB; resident %d → %d kB: want fewer", n, before, after)
	}
	// Code and read-only data fault back in: regexp, maps and strings
	// exercise plenty of both.
	if !regexp.MustCompile(`^a+b$`).MatchString(strings.Repeat("a", 100) + "b") {
		t.Error("regexp answers wrongly after Release")
	}
}

// A read-only mapping holding a private copy of a page (what a debugger's
// breakpoint or a relocated PIE segment leaves) is left alone, and the copy
// keeps its content.
func TestReleaseKeepsPrivateCopies(t *testing.T) {
	var ro *mapping
	for _, m := range exeMappings(t) {
		if m.perms == "r--p" && m.hi-m.lo > 2*uintptr(os.Getpagesize()) {
			ro = &m
			break
		}
	}
	if ro == nil {
		t.Skip("no read-only data mapping of the executable")
	}
	// Copy one page on write as a debugger does, through /proc/self/mem,
	// writing back the byte that is there so the content stays the same.
	page := ro.hi - uintptr(os.Getpagesize())
	mem, err := os.OpenFile("/proc/self/mem", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	b := make([]byte, 1)
	if _, err := mem.ReadAt(b, int64(page)); err != nil {
		t.Fatal(err)
	}
	if _, err := mem.WriteAt(b, int64(page)); err != nil {
		t.Fatal(err)
	}
	var anonBefore int
	for _, m := range exeMappings(t) {
		if m.lo <= page && page < m.hi {
			anonBefore = m.anonK
		}
	}
	if anonBefore == 0 {
		t.Fatal("writing through /proc/self/mem made no private copy of the page")
	}
	if _, err := Release(); err != nil {
		t.Fatal(err)
	}
	for _, m := range exeMappings(t) {
		if m.lo <= page && page < m.hi && m.anonK != anonBefore {
			t.Errorf("the mapping with the private page now has %d kB anonymous, had %d: Release dropped it", m.anonK, anonBefore)
		}
	}
}

// The scheduler releases once, quiet after the last poke, and not after Stop.
func TestScheduler(t *testing.T) {
	const quiet = 100 * time.Millisecond
	ran := make(chan time.Time, 8)
	start := time.Now()
	s := NewScheduler(quiet, func(int, error) { ran <- time.Now() })
	time.Sleep(60 * time.Millisecond)
	s.Poke()
	// On a loaded machine the sleep can overrun the quiet period, and then
	// the first Release rightly ran before the poke: only a poke made in
	// time must have moved it.
	pokedAt := time.Since(start)
	got := <-ran
	if d := got.Sub(start); pokedAt < quiet && d < 160*time.Millisecond {
		t.Errorf("released %s after start; a poke at %s should have moved it to ≥ 160 ms", d, pokedAt)
	}
	s.Poke()
	s.Stop()
	// A Release that started before Stop may have finished meanwhile; none
	// may come after Stop returned, although the poke had armed one.
	for len(ran) > 0 {
		<-ran
	}
	select {
	case <-ran:
		t.Error("released after Stop")
	case <-time.After(3 * quiet):
	}
}
