package gateway

import (
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"go.uber.org/zap"

	"github.com/pptpgw/pptpgw/alg/pptpmsg"
	"github.com/pptpgw/pptpgw/alg/pptptest"
	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/fastpath"
	"github.com/pptpgw/pptpgw/nat/nfq"
	"github.com/pptpgw/pptpgw/nat/nfq/nfqtest"
	"github.com/pptpgw/pptpgw/nat/rules"
)

var (
	pktClient = netip.MustParseAddrPort("192.168.1.10:40001")
	pktPAC    = netip.MustParseAddrPort("203.0.113.5:1723")
	pktPublic = netip.MustParseAddr("198.51.100.1")
)

// masquerade resolves control connections as MASQUERADE keeping ports.
type masquerade struct{}

func (masquerade) Resolve(src, dst conntrack.Endpoint) (conntrack.ConnSpec, bool) {
	in, out := src, dst
	if src.Port == 1723 {
		in, out = dst, src
	}
	return conntrack.ConnSpec{Inside: in, Outside: out,
		Public: conntrack.Endpoint{Addr: conntrack.AddrFrom(pktPublic), Port: in.Port}}, true
}

// ifaceBackend is a fast path on interfaces (as bpf): it records the set
// it is told.
type ifaceBackend struct {
	*memBackend
	mu     sync.Mutex
	ifaces []int
}

func (b *ifaceBackend) SetInterfaces(ix []int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ifaces = slices.Clone(ix)
	return nil
}

func (b *ifaceBackend) Interfaces() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.ifaces)
}

func ipv4(s, d netip.Addr, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: net.IP(s.AsSlice()), DstIP: net.IP(d.AsSlice())}
}

func segment(s, d netip.AddrPort, seq, ack uint32, syn bool, payload []byte) []byte {
	ip := ipv4(s.Addr(), d.Addr(), layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: layers.TCPPort(s.Port()), DstPort: layers.TCPPort(d.Port()), Seq: seq, Ack: ack,
		SYN: syn, ACK: true, PSH: len(payload) > 0, Window: 64240}
	tcp.SetNetworkLayerForChecksum(ip)
	return pptptest.Serialize(ip, tcp, gopacket.Payload(payload))
}

func gre(s, d netip.Addr, callID uint16) []byte {
	return pptptest.Serialize(ipv4(s, d, layers.IPProtocolGRE), gopacket.Payload(pptpmsg.GRE(callID, 1, []byte{0xff, 0x03, 0xc0, 0x21})))
}

// TestPacketPath: a control conversation and GRE through the gateway's
// handler over in-memory queues, as the kernel would queue them: the
// queue and the kernel's hook tell control from inbound and outbound GRE,
// translated inbound GRE takes the mark bit, unknown GRE is dropped, the
// call reaches the fast path's desired state, and the control segments'
// devices are learnt for the bpf path.
func TestPacketPath(t *testing.T) {
	bpf := &ifaceBackend{memBackend: &memBackend{name: PathBPF}}
	g, qs, err := testGatewayDeps(t, Config{GREPath: PathBPF, Rules: rules.Config{Queue: 10, Queues: 1}}, nil, func(d *Deps) {
		d.Resolver = masquerade{}
		d.Backends[PathBPF] = func() (fastpath.Backend, error) { return bpf, nil }
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- g.Run(t.Context()) }()
	ctl, greQ := qs[0], qs[1]
	fwd := nfq.Meta{Hook: nfq.HookForward, HasInDev: true, InDev: 3, OutDev: 5}
	send := func(q *nfqtest.Queues, queue uint16, pkt []byte, meta nfq.Meta) nfqtest.Result {
		t.Helper()
		r, err := q.Handle(queue, pkt, 0, meta)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	const cISN, sISN = 1000, 5000
	sccrq, sccrp := pptpmsg.NewSCCRQ("c"), pptpmsg.NewSCCRP("s")
	ocrq, ocrp := pptpmsg.NewOCRQ(0x10, 1), pptpmsg.NewOCRP(0x80, 0x10, 1)
	c, s := uint32(cISN+1), uint32(sISN+1)
	send(ctl, 10, segment(pktPAC, pktClient, sISN, c, true, nil), fwd)
	send(ctl, 10, segment(pktClient, pktPAC, c, s, false, sccrq), fwd)
	c += uint32(len(sccrq))
	send(ctl, 10, segment(pktPAC, pktClient, s, c, false, sccrp), fwd)
	s += uint32(len(sccrp))
	send(ctl, 10, segment(pktClient, pktPAC, c, s, false, ocrq), fwd)
	c += uint32(len(ocrq))
	send(ctl, 10, segment(pktPAC, pktClient, s, c, false, ocrp), fwd)
	calls := g.Calls()
	if len(calls) != 1 || calls[0].State != conntrack.StateEstablished {
		t.Fatalf("calls %+v, want one established", calls)
	}
	outer := calls[0].OuterID

	mark := g.cfg.Rules.MarkBit
	in := send(greQ, 11, gre(pktPAC.Addr(), pktPublic, outer), nfq.Meta{Hook: nfq.HookPrerouting, HasInDev: true})
	if in.Verdict != nfq.Accept || !in.Modified || in.Mark&mark == 0 ||
		netip.AddrFrom4([4]byte(in.Packet[16:20])) != pktClient.Addr() || pptpmsg.Field(in.Packet[20:], 6) != 0x10 {
		t.Errorf("inbound GRE: %+v", in)
	}
	out := send(greQ, 11, gre(pktClient.Addr(), pktPAC.Addr(), 0x80), nfq.Meta{Hook: nfq.HookPostrouting, HasInDev: true})
	if out.Verdict != nfq.Accept || !out.Modified || out.Mark&mark != 0 || netip.AddrFrom4([4]byte(out.Packet[12:16])) != pktPublic {
		t.Errorf("outbound GRE: %+v", out)
	}
	if r := send(greQ, 11, gre(pktPAC.Addr(), pktPublic, outer^0x5555), nfq.Meta{Hook: nfq.HookPrerouting, HasInDev: true}); r.Verdict != nfq.Drop {
		t.Errorf("GRE of no call: %+v", r)
	}

	deadline := time.Now().Add(5 * time.Second)
	for (len(bpf.Interfaces()) != 2 || g.Stats()["gre_bpf_calls"] != 1) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := bpf.Interfaces(); !slices.Equal(got, []int{3, 5}) {
		t.Errorf("interfaces learnt %v, want [3 5]", got)
	}
	if n := g.Stats()["gre_bpf_calls"]; n != 1 {
		t.Errorf("gre_bpf_calls %d, want the call in the fast path", n)
	}
	if s := g.Stats(); s["gre_in"] != 1 || s["gre_out"] != 1 || s["gre_dropped_unknown_call"] != 1 {
		t.Errorf("stats gre_in %d gre_out %d unknown %d", s["gre_in"], s["gre_out"], s["gre_dropped_unknown_call"])
	}
	ctl.Fail(nil)
	if err := <-done; err == nil {
		t.Error("Run did not report the queues' end")
	}
}

// A resync puts back what the backend lost (an interface gone and back,
// a bridge's ports changed): the known set again.
func TestIfaceResync(t *testing.T) {
	be := &ifaceBackend{}
	var s ifaceSet
	s.setFixed([]int{4, 2})
	s.attach(be, zap.NewNop())
	be.SetInterfaces(nil) // what the kernel side lost
	s.resync(time.Now())
	if got := be.Interfaces(); !slices.Equal(got, []int{4, 2}) {
		t.Fatalf("after resync attached to %v, want [4 2]", got)
	}
}
