// Package tinyshim is the exec shim hotswap starts its generations through
// when it can: a static executable of about 1.4 KB, written in assembly
// (shim_amd64.S, shim_arm64.S), embedded in hotswap as bytes and run from a
// sealed memfd.
// It does the one thing Go cannot do between fork and exec — set LISTEN_PID
// to the child's own PID — and execs the server, in well under a
// millisecond, where re-executing the 26 MB hotswap binary as the shim
// (reuseport/internal/execshim) pays the Go runtime's start and every
// package initializer first (docs/perf-swap.md).
//
// It owns the shim's program, its protocol ([Shim.Command]) and the memfd
// it runs from. It never starts or waits for a process. Where the tiny shim
// cannot run — another architecture, no memfd_create, memfds that may not
// be executed (vm.memfd_noexec=2) — [Load] says why and the caller keeps
// the self re-exec.
//
// hack/tinyshim.sh regenerates image_ARCH.go from shim_ARCH.S with GNU
// binutils; TestImageMatchesSource checks they agree, and runs the arm64
// shim under qemu-user where it is installed.
package tinyshim
