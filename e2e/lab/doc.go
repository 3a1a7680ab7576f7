// Package lab builds throw-away network-namespace topologies for the
// root-only e2e tests and runs real PPTP peers in them: pptpd with the lab's
// pppeer as its "pppd", pptp-linux clients each in a private mount namespace
// with a socketpair to a pppeer, and the lab's own pptpcli. Everything a Lab
// starts or creates is removed by its Cleanup, which New registers with
// t.Cleanup, so a failing test leaves no namespace and no process behind.
//
// Processes the lab starts get SIGKILL when the test binary dies
// (Pdeathsig), and the ones run with a private mount namespace are pid 1 of
// their own pid namespace, so every child they fork dies with them.
//
// The package is Linux only; elsewhere it is empty.
package lab
