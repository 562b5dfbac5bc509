package startuppages

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// mapping is one line of /proc/self/smaps with what Release checks.
type mapping struct {
	lo, hi       uintptr
	perms        string
	dev          string // major:minor, hex
	inode        uint64
	rssKB, anonK int
}

// Release unmaps the clean read-only mappings of the running executable and
// returns how many kB were resident in them.
func Release() (int, error) {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/exe", &st); err != nil {
		return 0, fmt.Errorf("startuppages: stat own executable: %w", err)
	}
	maps, err := readSmaps()
	if err != nil {
		return 0, err
	}
	released := 0
	for _, m := range maps {
		if m.inode != st.Ino || m.dev != devString(st.Dev) || strings.ContainsRune(m.perms, 'w') || m.anonK != 0 || m.rssKB == 0 {
			continue
		}
		// The raw call: the range is not Go memory, so no []byte for it.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, m.lo, m.hi-m.lo, unix.MADV_DONTNEED); errno != 0 {
			return released, fmt.Errorf("startuppages: madvise %x-%x: %w", m.lo, m.hi, errno)
		}
		released += m.rssKB
	}
	return released, nil
}

// devString formats a device number as /proc/PID/maps does (hex major:minor).
func devString(dev uint64) string {
	return fmt.Sprintf("%02x:%02x", unix.Major(dev), unix.Minor(dev))
}

func readSmaps() ([]mapping, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return nil, fmt.Errorf("startuppages: %w", err)
	}
	defer f.Close()
	var out []mapping
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		fs := strings.Fields(line)
		if len(fs) >= 5 && strings.Contains(fs[0], "-") && !strings.HasSuffix(fs[0], ":") {
			lo, hi, _ := strings.Cut(fs[0], "-")
			a, err1 := strconv.ParseUint(lo, 16, 64)
			b, err2 := strconv.ParseUint(hi, 16, 64)
			ino, err3 := strconv.ParseUint(fs[4], 10, 64)
			if err1 != nil || err2 != nil || err3 != nil {
				return nil, fmt.Errorf("startuppages: unexpected smaps line %q", line)
			}
			out = append(out, mapping{lo: uintptr(a), hi: uintptr(b), perms: fs[1], dev: fs[3], inode: ino})
			continue
		}
		if len(out) == 0 || len(fs) < 2 {
			continue
		}
		m := &out[len(out)-1]
		switch fs[0] {
		case "Rss:":
			m.rssKB, _ = strconv.Atoi(fs[1])
		case "Anonymous:":
			m.anonK, _ = strconv.Atoi(fs[1])
		}
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("startuppages: read smaps: %w", err)
	}
	return out, nil
}
