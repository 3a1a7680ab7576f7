// Package pptptest is pptpgw's test kit, with alg/pptpmsg (the PPTP
// message and GRE builder), nat/rules.Memory (the in-memory iptables) and
// e2e/lab's Basic (the namespace topology): the real captures of the
// repository's testdata/pcaps and one reader for them, the module root,
// and packets serialized by gopacket. It is written apart from the code
// under test (gopacket reads the captures, not nat/replay's own reader),
// so the tests that use it check that code against an independent view.
// It imports nothing of pptpgw, so every package's tests, alg's included,
// can use it.
package pptptest
