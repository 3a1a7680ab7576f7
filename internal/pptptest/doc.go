// Package pptptest is pptpgw's test kit: the real captures of the
// repository's testdata/pcaps and one reader for them. It is written apart
// from the code under test (gopacket decodes the frames, not
// nat/replay's own reader), so the tests that use it check that code
// against an independent view. It imports nothing of pptpgw but alg/hdr
// and internal/pptpmsg, so every package's tests, alg's included, can use
// it.
package pptptest
