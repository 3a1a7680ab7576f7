package conntrack_test

import (
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/conntrack"
)

// established sets up n calls with unique inside IDs (so outer = inside),
// 100 per client connection, and returns their inside IDs by client.
func established(tb testing.TB, tbl *conntrack.Table, n int) (clients []conntrack.Addr, ids []uint16) {
	tb.Helper()
	res := &fakeResolver{}
	var f *flow
	for i := 0; i < n; i++ {
		if i%100 == 0 {
			c := clientAddr(i / 100)
			f = pnsFlow(tb, tbl, res, c, 40000, pac1)
			f.noCheck = true
			f.start()
		}
		id := uint16(i)
		f.send(dirOut, ocrq(id))
		f.send(dirIn, ocrp(id^0x8000, id, 1))
		clients = append(clients, f.ends[dirOut].Addr)
		ids = append(ids, id)
	}
	if got := tbl.Stats()["calls_active"]; got != uint64(n) {
		tb.Fatalf("calls_active %d, want %d", got, n)
	}
	return clients, ids
}

// GRE lookups from several goroutines while calls come and go, and while
// the admin side reads the table.
func TestConcurrency(t *testing.T) {
	tbl := newTable(bigLimits)
	clients, ids := established(t, tbl, 200)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	const workers = 4
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				j := (i*7 + w) % len(ids)
				now := t0.Add(time.Duration(i) * time.Millisecond).UnixNano()
				if a, id, v := tbl.GREIn(pac1, pub1, ids[j], 100, now); v != conntrack.GREForward || a != clients[j] || id != ids[j] {
					t.Errorf("GREIn(%#04x) = %v %#04x %v", ids[j], a, id, v)
					return
				}
				if p, v := tbl.GREOut(clients[j], pac1, ids[j]^0x8000, 100, now); v != conntrack.GREForward || p != pub1 {
					t.Errorf("GREOut = %v %v", p, v)
					return
				}
				// Lookups of calls that come and go: any verdict, no race.
				tbl.GREIn(pac1, pub1, uint16(0x9000+i%64), 10, now)
				tbl.GREOut(cli1, pac1, uint16(0x7000+i%64), 10, now)
				tbl.GREOut(cli2, pac2, uint16(i%64), 10, now)
			}
		}(w)
	}
	// Churn: calls set up and torn down, limits hit, mid-stream pick-ups
	// bound by GRE, connections ending and expiring.
	churn := make(chan struct{})
	go func() {
		defer close(churn)
		res := &fakeResolver{}
		for round := 0; round < 30; round++ {
			f := pnsFlow(t, tbl, res, cli1, uint16(41000+round), pac1)
			f.now = t0.Add(time.Duration(round) * time.Second).UnixNano()
			f.start()
			for k := 0; k < 32; k++ {
				id := uint16(0x9000 + k)
				out := f.send(dirOut, ocrq(id))
				if u16(out, 12) != id {
					t.Errorf("churn outer %#04x", u16(out, 12))
					return
				}
				f.send(dirIn, ocrp(0x7000+uint16(k), id, 1))
			}
			for k := 0; k < 32; k += 2 {
				f.send(dirOut, ccrq(uint16(0x9000+k)))
				f.send(dirIn, cdn(0x7000+uint16(k)))
			}
			if round%3 == 0 {
				_ = tbl.Delete(callName(pub1, pac1, 0x9001), f.now)
			}
			m := midFlow(t, tbl, ep(cli2, uint16(42000+round)), ep(pac2, 1723))
			m.now = f.now
			m.send(dirIn, sli(uint16(round)))
			tbl.GREOut(cli2, pac2, uint16(round), 10, f.now) // binds
			if round%2 == 0 {
				f.rst(dirIn)
			} else {
				f.fin(dirOut)
				f.fin(dirIn)
			}
			m.rst(dirOut)
			tbl.Expire(f.now + int64(conntrack.DefaultCloseLinger))
		}
	}()
	// The admin side.
	wg.Add(1)
	go func() {
		defer wg.Done()
		var sb conntrack.StateBuf // the state writer's, reused
		var data []byte
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = rows(tbl)
			_ = tbl.Stats()
			if _, err := json.Marshal(tbl.Snapshot()); err != nil {
				t.Error(err)
				return
			}
			tbl.SnapshotTo(&sb)
			if data = sb.AppendJSON(data[:0]); !json.Valid(data) {
				t.Errorf("state writer's JSON not valid: %.200s", data)
				return
			}
			_ = tbl.Limits()
		}
	}()
	<-churn
	close(stop)
	wg.Wait()
	if s := tbl.Sizes(); s.Active != 200 || s.Pending != 0 || s.Unbound != 0 {
		t.Errorf("after the churn: %+v", s)
	}
}

// 100 000 calls set up and torn down leave nothing behind.
func TestNoGrowth(t *testing.T) {
	n := 100000
	if testing.Short() {
		n = 10000
	}
	goroutines := runtime.NumGoroutine()
	var heapWarm uint64
	tbl := newTable(conntrack.Limits{MaxCalls: 50, MaxCallsPerInside: 40})
	res := &fakeResolver{}
	const perConn = 100
	now := t0
	var maxSizes conntrack.Sizes
	for c := 0; c < n/perConn; c++ {
		client := clientAddr(c % 7)
		f := pnsFlow(t, tbl, res, client, uint16(40000+c%3), pac1)
		f.noCheck = true
		f.now = now.UnixNano()
		f.next = [2]uint32{uint32(c) * 1000003, uint32(c) * 7919}
		f.start()
		for k := 0; k < perConn; k++ {
			id := uint16(k * 37)
			out := f.send(dirOut, ocrq(id))
			outer := u16(out, 12)
			switch k % 10 {
			case 0: // failed
				f.send(dirIn, ocrp(uint16(k), outer, 3))
			case 1: // never answered: left for the setup timeout or the end
			default:
				f.send(dirIn, ocrp(uint16(k), outer, 1))
				tbl.GREIn(pac1, pub1, outer, 100, f.now)
				tbl.GREOut(client, pac1, uint16(k), 100, f.now)
				if k%10 == 2 {
					f.send(dirOut, ccrq(id))
				}
				if k%5 != 4 { // some calls stay up until the connection ends
					f.send(dirIn, cdn(uint16(k)))
				}
			}
			f.send(dirIn, sli(outer))
		}
		if s := tbl.Sizes(); s.Calls > maxSizes.Calls {
			maxSizes = s
		}
		switch c % 4 {
		case 0:
			f.rst(dirOut)
		case 1:
			f.send(dirOut, stopRQ())
			f.send(dirIn, stopRP())
			f.fin(dirIn)
			f.fin(dirOut)
		case 2:
			f.fin(dirOut)
			f.fin(dirIn)
		case 3:
			// No end seen: the connection goes on control idle.
		}
		now = now.Add(time.Second)
		tbl.Expire(now.UnixNano())
		if c == n/perConn/10 {
			heapWarm = heapInUse()
		}
	}
	// Connections whose end was not seen end on control idle, then linger.
	now = now.Add(conntrack.DefaultControlIdle)
	tbl.Expire(now.UnixNano())
	tbl.Expire(now.Add(conntrack.DefaultCloseLinger).UnixNano())
	wantEmpty(t, tbl)
	st := tbl.Stats()
	if st["calls_set_up"] == 0 || st["calls_refused"] == 0 || st["calls_failed"] == 0 {
		t.Errorf("the run did not exercise everything: %v", st)
	}
	if st["calls_set_up"]+st["calls_refused"]+st["calls_failed"]+uint64(n/10) != uint64(n) {
		t.Errorf("calls: set up %d + refused %d + failed %d + unanswered %d != %d",
			st["calls_set_up"], st["calls_refused"], st["calls_failed"], n/10, n)
	}
	if st["calls_ended"] != st["calls_set_up"] {
		t.Errorf("calls ended %d, set up %d", st["calls_ended"], st["calls_set_up"])
	}
	// Bounded by what one connection holds plus the unanswered requests of
	// the connections of the last SetupTimeout (one connection a second).
	if bound := perConn + int(conntrack.DefaultSetupTimeout/time.Second)*perConn/10; maxSizes.Calls > bound {
		t.Errorf("calls held at once: %+v", maxSizes)
	}
	if g := runtime.NumGoroutine(); g > goroutines {
		t.Errorf("goroutines %d -> %d", goroutines, g)
	}
	// The heap after all of it is no larger than after the first tenth
	// (the maps keep their buckets; 4 MiB of slack for the runtime).
	if h := heapInUse(); h > heapWarm+4<<20 {
		t.Errorf("heap in use %d KiB after %d setups, %d KiB after a tenth of them", h>>10, n, heapWarm>>10)
	}
	runtime.KeepAlive(tbl)
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func TestGREZeroAllocs(t *testing.T) {
	tbl := newTable(bigLimits)
	clients, ids := established(t, tbl, 100)
	now := t0.UnixNano()
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		j := i % len(ids)
		i++
		if _, _, v := tbl.GREIn(pac1, pub1, ids[j], 100, now); v != conntrack.GREForward {
			t.Fatal(v)
		}
		if _, v := tbl.GREOut(clients[j], pac1, ids[j]^0x8000, 100, now); v != conntrack.GREForward {
			t.Fatal(v)
		}
		tbl.GREIn(pac1, pub1, 0xFFFF, 100, now) // unknown
	})
	if allocs != 0 {
		t.Errorf("GREIn+GREOut: %v allocs per run, want 0", allocs)
	}
}

func benchGRE(b *testing.B, out bool) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			tbl := newTable(conntrack.Limits{MaxCalls: 20000, MaxCallsPerInside: 200})
			clients, ids := established(b, tbl, n)
			now := t0.UnixNano()
			b.ReportAllocs()
			b.ResetTimer()
			j := 0
			for i := 0; i < b.N; i++ {
				if out {
					if _, v := tbl.GREOut(clients[j], pac1, ids[j]^0x8000, 100, now); v != conntrack.GREForward {
						b.Fatal(v)
					}
				} else {
					if _, _, v := tbl.GREIn(pac1, pub1, ids[j], 100, now); v != conntrack.GREForward {
						b.Fatal(v)
					}
				}
				if j++; j == n {
					j = 0
				}
			}
		})
	}
}

func BenchmarkGREIn(b *testing.B)  { benchGRE(b, false) }
func BenchmarkGREOut(b *testing.B) { benchGRE(b, true) }

// BenchmarkGREInParallel is GREIn from several goroutines, as several
// NFQUEUE readers do.
func BenchmarkGREInParallel(b *testing.B) {
	tbl := newTable(conntrack.Limits{MaxCalls: 20000, MaxCallsPerInside: 200})
	_, ids := established(b, tbl, 1000)
	now := t0.UnixNano()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		j := 0
		for pb.Next() {
			tbl.GREIn(pac1, pub1, ids[j], 100, now)
			if j++; j == len(ids) {
				j = 0
			}
		}
	})
}

// BenchmarkControlSLI is one control segment of an established call
// through the stream tracker.
func BenchmarkControlSLI(b *testing.B) {
	tbl := newTable(conntrack.Limits{})
	f := pnsFlow(b, tbl, &fakeResolver{}, cli1, 40001, pac1)
	f.noCheck = true
	f.start()
	f.pnsCall(1, 0x100)
	g := pnsFlow(b, tbl, &fakeResolver{}, cli2, 40002, pac1)
	g.noCheck = true
	g.start()
	g.pnsCall(1, 0x101) // outer 2: SLI restored
	m := sli(2)
	buf := make([]byte, len(m))
	seg := &conntrack.Segment{Src: g.ends[dirIn], Dst: g.ends[dirOut], Seq: g.next[dirIn],
		Ack: g.next[dirOut], ACK: true, Payload: buf}
	now := g.now
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		copy(buf, m)
		if r := tbl.Control(seg, now, nil); !r.Modified {
			b.Fatal("SLI not restored")
		}
		seg.Seq += uint32(len(m))
	}
}

// The control path of an established call allocates nothing either.
func TestControlZeroAllocs(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	f := pnsFlow(t, tbl, &fakeResolver{}, cli1, 40001, pac1)
	f.start()
	f.pnsCall(1, 0x100)
	g := pnsFlow(t, tbl, &fakeResolver{}, cli2, 40002, pac1)
	g.start()
	g.pnsCall(1, 0x101) // outer 2
	m := cat(sli(2), echoRQ())
	buf := make([]byte, len(m))
	seg := &conntrack.Segment{Src: g.ends[dirIn], Dst: g.ends[dirOut], Seq: g.next[dirIn],
		Ack: g.next[dirOut], ACK: true, Payload: buf}
	allocs := testing.AllocsPerRun(1000, func() {
		copy(buf, m)
		if r := tbl.Control(seg, g.now, nil); !r.Modified || u16(buf, 12) != 1 {
			t.Fatal("SLI not restored")
		}
		seg.Seq += uint32(len(m))
	})
	if allocs != 0 {
		t.Errorf("Control: %v allocs per segment, want 0", allocs)
	}
}

// BenchmarkMemoryPerCall reports the heap a call costs once established
// (bytes/call, measured over 10 000 calls after a GC): with 100 calls per
// control connection (a call's own share), and with a control connection
// per call (what a call costs when each client has its own connection, the
// common case: the connection's stream trackers and rewrite records
// included).
func BenchmarkMemoryPerCall(b *testing.B) {
	const n = 10000
	for _, perConn := range []int{100, 1} {
		b.Run(fmt.Sprintf("calls_per_conn=%d", perConn), func(b *testing.B) {
			for range b.N {
				before := heapAlloc()
				tbl := newTable(conntrack.Limits{MaxCalls: 2 * n, MaxCallsPerInside: 2 * n})
				res := &fakeResolver{}
				var f *flow
				for i := range n {
					if i%perConn == 0 {
						f = pnsFlow(b, tbl, res, clientAddr(i/perConn%250), uint16(20000+i/perConn/250), pac1)
						f.noCheck = true
						f.start()
					}
					id := uint16(i)
					f.send(dirOut, ocrq(id))
					f.send(dirIn, ocrp(id^0x8000, id, 1))
				}
				if got := tbl.Stats()["calls_active"]; got != n {
					b.Fatalf("calls_active %d, want %d", got, n)
				}
				b.ReportMetric(float64(heapAlloc()-before)/n, "bytes/call")
				runtime.KeepAlive(tbl)
			}
		})
	}
}

func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
