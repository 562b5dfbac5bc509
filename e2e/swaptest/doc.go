// Package swaptest is the harness of hotswap's swap tests (e2e/swap, the
// example server; e2e/servers, real servers nobody here wrote): hotswap runs
// as PID 1 in a fresh PID + mount namespace, inside a network namespace of
// the test's own (private loopback; net.ipv4.tcp_migrate_req set there
// only), with the load generator of package e2e/load driving it over
// loopback while swaps are triggered through the control socket or SIGUSR2.
//
// It owns starting and watching that pod (StartPod, Pod), running a test in
// its own network namespace (InNetns), the mixed load every swap test runs
// and the scripted swaps. It must never change anything outside the test's
// own namespaces: SetMigrateReq refuses to run in the host's.
//
// How a test runs:
//
//   - The test re-runs itself (the test binary, -test.run=^Name$) under
//     `unshare --net`, so the whole test body, its load generator included,
//     lives in a network namespace with only a loopback interface, which the
//     child brings up itself. Nothing leaves that namespace.
//   - hotswap starts with CLONE_NEWPID|CLONE_NEWNS: it is PID 1 of its own PID
//     namespace (with its own /proc) and shares the test's network namespace,
//     so the load reaches it on 127.0.0.1.
//   - The control socket lives in the test's temporary directory, a path both
//     sides see; SIGUSR2 and SIGTERM are sent to PID 1's PID as the test sees it.
//
// The command hotswap runs is PodConfig.Command (a real server with its own
// configuration), or else the example server through a wrapper script,
// DIR/run.sh, which execs `hotswap serve` with the flags it reads from
// DIR/flags at each start: a test rewrites DIR/flags (SetServeFlags) before a
// swap to make the next generation crash at start, never become ready, exit
// during the old one's drain or ignore the stop signal. The script execs, so
// the server keeps the PID hotswap started (LISTEN_PID and sd_notify's
// main-PID check still hold).
//
// A package using it calls Main from its TestMain. Needs root (namespaces);
// tests skip otherwise.
package swaptest
