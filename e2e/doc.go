// Package e2e holds the root-only end-to-end tests, built with the tag e2e
// (`go test -tags e2e ./e2e/...`): network namespaces with real iptables,
// real pptpd and pptp-linux, and the lab's own PPP peer and PPTP client
// (e2e/cmd), assembled with the e2e/lab package.
//
// The gw_test.go tests run the real pptpgw daemon on the gateway
// (lab.NS.StartGateway): the binary named by PPTPGW_E2E_BIN (`make e2e`
// sets it to bin/pptpgw), else one built once per test process.
// PPTPGW_E2E_KEEP=1 keeps each lab's directory: logs, captures, status
// files, the daemon's state file.
package e2e
