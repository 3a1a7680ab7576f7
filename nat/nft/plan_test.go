package nft

import (
	"bytes"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/pptpgw/pptpgw/conntrack"
)

func TestKeys(t *testing.T) {
	peer, public := conntrack.Addr{198, 51, 100, 2}, conntrack.Addr{203, 0, 113, 1}
	// As `nft --debug=netlink` shows the elements the nft CLI adds:
	// each field padded to 4 bytes.
	if got, want := greKey(peer, public, 0x4000), (key{198, 51, 100, 2, 203, 0, 113, 1, 0x40, 0, 0, 0}); got != want {
		t.Errorf("greKey % x, want % x", got, want)
	}
	if got := callID(0x1234); !bytes.Equal(got, []byte{0x12, 0x34}) {
		t.Errorf("callID % x", got)
	}
}

// TestParseKey: an element read back names the packet fields it was
// keyed by.
func TestParseKey(t *testing.T) {
	src, dst := conntrack.Addr{198, 51, 100, 2}, conntrack.Addr{203, 0, 113, 1}
	el := nftables.SetElement{Key: greKeyBytes(src, dst, 0x4001), Counter: &expr.Counter{Packets: 3, Bytes: 300}}
	k, ok := parseKey(el)
	if !ok || k.src != src || k.dst != dst || k.id != 0x4001 {
		t.Errorf("parseKey = %+v, %v", k, ok)
	}
	el.Counter = nil
	if _, ok := parseKey(el); ok {
		t.Error("an element without counter parsed")
	}
	if _, ok := parseKey(nftables.SetElement{Key: []byte{1, 2, 3}, Counter: &expr.Counter{}}); ok {
		t.Error("a short key parsed")
	}
}
