// Package entrypoint owns the duties of PID 1: it is the only caller of
// wait4 in the process, it starts every child in its own process group, and
// it knows what each signal means to an init.
//
// The classic PID-1-in-Go bug is a second waiter: os/exec's Cmd.Wait (or
// os.Process.Wait) and a wait4(-1) reaper race for the same exit status, and
// one of them loses it. This package avoids it in three rules:
//
//  1. One goroutine (the Reaper's) calls wait4(-1, WNOHANG), on every SIGCHLD.
//  2. Reaper.Start forks and registers the PID under the lock that the reaper
//     holds while it calls wait4, so a child that exits at once is never
//     mistaken for an orphan.
//  3. Nothing else waits: Process has no Wait that calls the kernel; its
//     status arrives through Done. Do not use os/exec to run processes in a
//     program that uses a Reaper: start them with Reaper.Start.
//
// The package imports no Kubernetes code and no swap logic.
package entrypoint
