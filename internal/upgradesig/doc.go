// Package upgradesig catches the init's signals from the first moment of a
// hotswap that an in-place upgrade exec'ed (docs/upgrade.md).
//
// Why a package of its own: the Go runtime unblocks SIGTERM, SIGINT,
// SIGHUP, SIGUSR1/2 on its own at start, whatever mask execve carried over,
// and a Go program that has not called signal.Notify for SIGTERM exits(2)
// when it gets one, even as PID 1. Between execve and the engine's own
// signal.Notify, package initializers run (client-go's are slow), so the
// subscription is made from this package's init, which sorts before the
// heavy ones and depends only on the standard library. It owns nothing
// else and must never import anything outside the standard library.
package upgradesig
