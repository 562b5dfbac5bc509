// Package entrypoint owns the duties of PID 1: it reaps every orphan, starts
// every child in its own process group, knows what each signal means to an
// init, and stops what a child leaves behind.
//
// The classic PID-1-in-Go bug is a second waiter: os/exec's Cmd.Wait (or
// os.Process.Wait) and a wait4(-1) reaper race for the same exit status, and
// one of them loses it. hotswap cannot avoid os/exec altogether: client-go
// runs exec credential plugins with it. So the Reaper never reaps a child it
// cannot prove is its own or an orphan:
//
//  1. One goroutine (the Reaper's) reaps, on every SIGCHLD. It never calls
//     wait4(-1): it peeks with waitid(P_ALL, WNOWAIT), which reaps nothing,
//     and reaps by PID.
//  2. Reaper.Start forks and registers the PID under the lock that the reaper
//     holds while it peeks and reaps, so a child that exits at once is never
//     mistaken for an orphan. Those children are reaped at once; their status
//     arrives through Process.Done (Process has no Wait that calls the kernel).
//  3. Any other exited child is an orphan (reparented to us: reap it, that is
//     the init's duty) or a child that os/exec started in this process (leave
//     it to its Cmd.Wait). The os package holds a pidfd on each of its
//     children from before the child runs until its Wait has reaped it, so
//     the reaper lists its children, then the pidfds open in the process
//     (other than its own), and reaps only the exited children no pidfd
//     holds. Where pidfds do not work the os package waits by PID and nothing
//     tells its children apart: unknown zombies are then left 100ms to their
//     owner before they are reaped, and a Wait later than that still fails.
//
// Start children with Reaper.Start, not os/exec, whenever this package is to
// signal or supervise them.
//
// Signals go to a child's whole process group, but by number, kill(-PID),
// only while the leader is unreaped and so holds the number. A group that
// outlives its leader is reached through pidfds on its members, and only
// while a member held since the leader was reaped proves the number is still
// ours; a stranger that later gets the PID and leads a group of that number
// is never signalled (group_linux.go). Process.KillTree also finds the
// daemons a child left in groups of their own, by an environment entry they
// inherited, and kills them through pidfds.
//
// Across hotswap's in-place upgrade (docs/upgrade.md) the rules hold too:
// Reaper.Hold stops all reaping before the exec, and NewReaperAdopting in
// the new program registers the old children before it first reaps.
//
// The package imports no Kubernetes code and no swap logic, and never signals
// a process by a number it has not proven still names the process it means.
package entrypoint
