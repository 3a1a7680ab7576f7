// Package e2e holds the root-only end-to-end tests, built with the tag e2e
// (`go test -tags e2e ./e2e/...`): network namespaces with real iptables,
// real pptpd and pptp-linux, and the lab's own PPP peer and PPTP client
// (e2e/cmd), assembled with the e2e/lab package.
package e2e
