package ppp

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

func TestFCSVector(t *testing.T) {
	// A frame followed by its own FCS (low byte first) leaves the good residue.
	f := []byte{0xFF, 0x03, 0xC0, 0x21, 0x01, 0x01, 0x00, 0x0A, 0x05, 0x06, 0x12, 0x34, 0x56, 0x78}
	fcs := FCS16(fcsInit, f) ^ 0xFFFF
	if got := FCS16(fcsInit, append(f, byte(fcs), byte(fcs>>8))); got != fcsGood {
		t.Fatalf("residue %04x, want %04x", got, fcsGood)
	}
}

func TestHDLCRoundTrip(t *testing.T) {
	frames := [][]byte{
		{0xFF, 0x03, 0xC0, 0x21, 0x09, 0x01, 0x00, 0x08, 0x7E, 0x7D, 0x00, 0x1F},
		{0xFF, 0x03, 0xC0, 0x21, 0x0A, 0x02, 0x00, 0x08, 0x20, 0x7F, 0x80, 0xFF},
	}
	var stream []byte
	for _, f := range frames {
		stream = Encode(stream, f)
	}
	for _, b := range stream[1 : len(stream)-1] {
		if b < 0x20 && b != 0 {
			// 0x00 never appears raw: every control byte is escaped.
			t.Fatalf("unescaped control byte %02x in % x", b, stream)
		}
	}
	var d Decoder
	var got [][]byte
	// Feed one byte at a time: frames may be split anywhere in a stream.
	for i := range stream {
		d.Feed(stream[i:i+1], func(f []byte) { got = append(got, bytes.Clone(f)) })
	}
	if len(got) != len(frames) || d.BadFCS != 0 {
		t.Fatalf("got %d frames, %d bad", len(got), d.BadFCS)
	}
	for i := range frames {
		if !bytes.Equal(got[i], frames[i]) {
			t.Errorf("frame %d: % x, want % x", i, got[i], frames[i])
		}
	}
	bad := Encode(nil, frames[0])
	bad[5] ^= 0x01
	d.Feed(bad, func([]byte) { t.Error("corrupt frame delivered") })
	if d.BadFCS != 1 {
		t.Errorf("BadFCS %d, want 1", d.BadFCS)
	}
}

// TestEnginesConverge wires two engines back to back through HDLC, as
// pptpd's pty and GRE would.
func TestEnginesConverge(t *testing.T) {
	var mu sync.Mutex
	var a, b *Engine
	var decA, decB Decoder
	deliver := func(dst *Engine, dec *Decoder) func([]byte) error {
		return func(f []byte) error {
			wire := Encode(nil, f)
			go func() { // async, like a real link, so no lock is held across engines
				mu.Lock()
				defer mu.Unlock()
				dec.Feed(wire, func(fr []byte) { dst.Input(bytes.Clone(fr)) })
			}()
			return nil
		}
	}
	a = NewEngine(Options{EchoInterval: 20 * time.Millisecond, AuthPAP: true}, nil)
	b = NewEngine(Options{EchoInterval: 20 * time.Millisecond}, nil)
	a.send = deliver(b, &decB)
	b.send = deliver(a, &decA)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		now := time.Now()
		a.Tick(now)
		b.Tick(now)
		ca, cb := a.Counters(), b.Counters()
		if ca.LCPOpened && cb.LCPOpened && ca.EchoRepRecv >= 3 && cb.EchoRepRecv >= 3 {
			if cb.PeerMagic != ca.Magic || ca.PeerMagic != cb.Magic {
				t.Fatalf("magic mismatch: %+v %+v", ca, cb)
			}
			if cb.PeerAuth != ProtoPAP {
				t.Fatalf("peer auth %04x, want PAP", cb.PeerAuth)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no convergence: %+v %+v", a.Counters(), b.Counters())
}

func TestRejectsUnknownOption(t *testing.T) {
	var sent [][]byte
	e := NewEngine(Options{}, func(f []byte) error { sent = append(sent, bytes.Clone(f)); return nil })
	// Configure-Request with Magic and option 13 (Callback).
	req := []byte{0xFF, 0x03, 0xC0, 0x21, codeConfReq, 7, 0, 13, optMagic, 6, 1, 2, 3, 4, 13, 3, 6}
	e.Input(req)
	if len(sent) != 1 || sent[0][4] != codeConfRej || !bytes.Equal(sent[0][8:], []byte{13, 3, 6}) {
		t.Fatalf("sent % x, want a Configure-Reject of option 13", sent)
	}
	// A frame without address and control field (ACFC) still parses.
	e.Input([]byte{0xC0, 0x21, codeEchoReq, 9, 0, 8, 0, 0, 0, 0})
	if c := e.Counters(); c.EchoReqRecv != 1 || c.EchoRepSent != 1 {
		t.Fatalf("echo not answered: %+v", c)
	}
}
