package main

import (
	"net"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/alg/pptpmsg"
)

// One control connection through serve: every request gets its answer, the
// PAC's Call IDs count up across connections, CDN names the PAC's call,
// and StopCCRQ ends the connection.
func TestServe(t *testing.T) {
	p := &pac{}
	p.nextID.Store(100)
	p.nextID.Add(5) // an earlier connection took 100..104
	pns, pacEnd := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- p.serve(pacEnd) }()
	pns.SetDeadline(time.Now().Add(5 * time.Second))
	ask := func(m []byte, want uint16) []byte {
		t.Helper()
		if _, err := pns.Write(m); err != nil {
			t.Fatalf("send %s: %v", pptpmsg.Name(pptpmsg.Type(m)), err)
		}
		r, err := pptpmsg.Read(pns)
		if err != nil || pptpmsg.Type(r) != want {
			t.Fatalf("after %s: %v %v, want %s", pptpmsg.Name(pptpmsg.Type(m)), r, err, pptpmsg.Name(want))
		}
		return r
	}
	if r := ask(pptpmsg.NewSCCRQ("t"), pptpmsg.SCCRP); pptpmsg.Byte(r, 14) != 1 {
		t.Errorf("SCCRP result %d", pptpmsg.Byte(r, 14))
	}
	// SLI gets no answer: the next reply is the Echo-Reply's.
	if _, err := pns.Write(pptpmsg.New(pptpmsg.SLI, 24)); err != nil {
		t.Fatal(err)
	}
	if r := ask(pptpmsg.NewEchoRQ(0xabcd), pptpmsg.EchoRP); pptpmsg.Field(r, 14) != 0xabcd {
		t.Errorf("Echo-Reply identifier % x", r[12:16])
	}
	for i, id := range []uint16{7000, 7001} {
		r := ask(pptpmsg.NewOCRQ(id, 1), pptpmsg.OCRP)
		if pptpmsg.Field(r, 12) != uint16(105+i) || pptpmsg.Field(r, 14) != id || pptpmsg.Byte(r, 16) != 1 {
			t.Errorf("OCRP for %d: Call ID %d PeerCallID %d result %d", id, pptpmsg.Field(r, 12), pptpmsg.Field(r, 14), pptpmsg.Byte(r, 16))
		}
	}
	if r := ask(pptpmsg.NewCCRQ(7001), pptpmsg.CDN); pptpmsg.Field(r, 12) != 106 {
		t.Errorf("CDN for 7001 names call %d, want 106", pptpmsg.Field(r, 12))
	}
	ask(pptpmsg.NewStopCCRQ(), pptpmsg.StopCCRP)
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}
	if p.calls.Load() != 2 || p.cleared.Load() != 1 {
		t.Errorf("counted %d calls, %d cleared", p.calls.Load(), p.cleared.Load())
	}
}

// A broken stream ends the connection with an error.
func TestServeBad(t *testing.T) {
	pns, pacEnd := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- (&pac{}).serve(pacEnd) }()
	pns.Write([]byte{0, 12, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0})
	if err := <-done; err == nil {
		t.Error("bad cookie: no error")
	}
}
