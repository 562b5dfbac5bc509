// Package startuppages gives back the pages of hotswap's own executable
// that only start-up needed.
//
// Starting hotswap touches most of its 17 MB binary once: every package
// initializer, the flag and feature set-up, the first TLS handshake to the
// apiserver; with the kernel's fault-around (64 kB per fault) 12–14 MB of
// text and read-only data end up mapped, of which an idle hotswap uses
// about 2 MB (docs/perf-footprint.md). Release unmaps the read-only
// mappings of the executable with MADV_DONTNEED: the pages stay in the
// page cache, and code that runs again faults them back in from there (a
// minor fault, no disk read while the page cache keeps them).
//
// It must never drop a page that is not an unmodified copy of the file:
// only mappings of the running executable's inode, without write
// permission, and with no private (anonymous, copy-on-write) page — a
// debugger's breakpoint or a relocated read-only segment of a PIE binary —
// are released; anything else is left alone.
package startuppages
