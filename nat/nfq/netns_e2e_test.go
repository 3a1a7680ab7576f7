//go:build e2e

package nfq

import "github.com/pptpgw/pptpgw/nat/internal/nstest"

// The namespace helpers are shared by the nat packages' e2e tests.
var (
	needRoot = nstest.NeedRoot
	sh       = nstest.Sh
	newNS    = nstest.NewNS
	link     = nstest.Link
	inNS     = nstest.InNS
	nsFD     = nstest.FD
)
