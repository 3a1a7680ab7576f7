package bpf

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The call lines (MapLineName): an array of 64-byte lines, each with two
// 32-byte slots, a call direction's value then its key. The program hashes
// a packet's key to one line and compares both slots: one cache line a
// packet, where the hash map costs a bucket and an element spread over
// two more, which is what makes thousands of calls slower than ten (the
// bucket walk was 15 % of the CPU at 10 000 calls). A key whose line is
// full goes to the hash map (MapCallsName, "the spill"), which the
// program asks only on a miss in the line.
const (
	lineSize = 64
	slotSize = 32
	slotKey  = 20 // the key's offset in a slot, after its value
)

// The line hash, the same in Go and in the program (32-bit arithmetic on
// the key's three words as the CPU loads them): multiplicative, the line
// taken from the top bits.
const (
	hashDaddr  = 0x9e3779b1
	hashCallID = 0x85ebca77
	hashMix    = 0xc2b2ae3d
)

// slotGrace is how long an emptied slot stays empty before another key
// may take it: a program that read the old key before it was cleared
// has long finished, so it can never pair the old key with a new value.
const slotGrace = time.Second

// lineCount is the number of lines for maxCalls calls: a power of two
// with a slot for every direction of every call twice over, so that few
// keys find their line full.
func lineCount(maxCalls uint32) uint32 {
	n := max(uint64(maxCalls)*2, 2)
	return uint32(1) << bits.Len64(n-1)
}

// lineShift is the right shift that leaves a hash's top log2(lines) bits.
func lineShift(lines uint32) uint32 { return 32 - uint32(bits.TrailingZeros32(lines)) }

func lineOf(k key, shift uint32) uint32 {
	s := binary.NativeEndian.Uint32(k[0:4])
	d := binary.NativeEndian.Uint32(k[4:8])
	c := binary.NativeEndian.Uint32(k[8:12])
	return (s ^ d*hashDaddr ^ c*hashCallID) * hashMix >> shift
}

// swapCounters says the daemon takes the slots' counters with atomic
// swaps to zero (lines.take): each read gets what the program counted
// since the last one, exactly, and the daemon keeps no last read of them.
// That needs the swaps to be single instructions against the program's
// atomic adds: on 32-bit hosts (arm, mips) Go makes a 64-bit atomic of a
// lock, which the program does not take, so there the daemon keeps each
// slot's last read (12 bytes a slot, sized once) and takes the
// difference: deltas either way. A variable: tests force the 32-bit way
// on any host.
var swapCounters = unsafe.Sizeof(uintptr(0)) == 8

// lines is the daemon's view of the call lines: the array mapped into its
// memory, written and read with atomic word accesses in an order that a
// concurrent program never sees a key with another key's value
// (cilium/ebpf's Map.Memory copies bytes, with no order). Its own state is
// per slot, sized once: nothing per call.
type lines struct {
	mem   []byte
	shift uint32
	epoch time.Time
	swaps bool     // swapCounters when made
	freed []int64  // per slot: when it was emptied, ns since epoch
	pkts  []uint32 // without swaps, per slot: the counters as last read
	byts  []uint64
}

// mapLines maps m (MapLineName). adopted says it comes from an earlier
// run: its empty slots wait slotGrace before they are used again.
func mapLines(m *ebpf.Map, adopted bool) (*lines, error) {
	mem, err := unix.Mmap(m.FD(), 0, int(m.MaxEntries())*lineSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("bpf: map %s into memory: %w", MapLineName, err)
	}
	return newLines(mem, adopted), nil
}

// newLines is the view of the lines in mem (len(mem)/lineSize of them, a
// power of two). Without swaps, adopted lines' counters are taken as read:
// what the previous daemon read of them is gone with it, and counting them
// whole would count the calls' history twice (the state file has it).
func newLines(mem []byte, adopted bool) *lines {
	n := len(mem) / lineSize
	l := &lines{mem: mem, shift: lineShift(uint32(n)), epoch: time.Now(), swaps: swapCounters,
		freed: make([]int64, 2*n)}
	if !l.swaps {
		l.pkts, l.byts = make([]uint32, 2*n), make([]uint64, 2*n)
		for s := 0; adopted && s < len(l.pkts); s++ {
			l.pkts[s], l.byts[s] = atomic.LoadUint32(l.word(s*slotSize+valPackets)), l.bytes(s*slotSize)
		}
	}
	if !adopted {
		for s := range l.freed {
			l.freed[s] = -int64(slotGrace)
		}
	}
	return l
}

func (l *lines) close() error {
	if l == nil || l.mem == nil {
		return nil
	}
	err := unix.Munmap(l.mem)
	l.mem = nil
	return err
}

func (l *lines) slots() int { return len(l.freed) }

func (l *lines) now() int64 { return int64(time.Since(l.epoch)) }

func (l *lines) word(off int) *uint32 { return (*uint32)(unsafe.Pointer(&l.mem[off])) }

func (l *lines) dword(off int) *uint64 { return (*uint64)(unsafe.Pointer(&l.mem[off])) }

// used says whether slot s holds a key: no key starts with address zero.
func (l *lines) used(s int) bool { return atomic.LoadUint32(l.word(s*slotSize+slotKey)) != 0 }

func (l *lines) key(s int) key {
	var k key
	o := s*slotSize + slotKey
	for i := 0; i < keySize; i += 4 {
		binary.NativeEndian.PutUint32(k[i:], atomic.LoadUint32(l.word(o+i)))
	}
	return k
}

// value reads slot s's value as it is, the counters left alone (take
// reads them).
func (l *lines) value(s int) value {
	o := s * slotSize
	var v value
	v.Byts = l.bytes(o)
	binary.NativeEndian.PutUint32(v.Addr[:], atomic.LoadUint32(l.word(o+valAddr)))
	var w [4]byte // Call ID, Dir, Pad
	binary.NativeEndian.PutUint32(w[:], atomic.LoadUint32(l.word(o+valCallID)))
	v.CallID, v.Dir = [2]byte{w[0], w[1]}, w[2]
	v.Packets = atomic.LoadUint32(l.word(o + valPackets))
	return v
}

// dir is slot s's direction (dirIn, dirOut).
func (l *lines) dir(s int) uint8 {
	var w [4]byte // Call ID, Dir, Pad
	binary.NativeEndian.PutUint32(w[:], atomic.LoadUint32(l.word(s*slotSize+valCallID)))
	return w[2]
}

// take reads what the program counted in slot s since the last take (or
// since put). With swaps each counter is swapped to zero in one atomic
// instruction, so that no add is lost: a packet's two adds may fall on
// both sides of a take, its bytes then come with the next one. A counter
// found zero is not swapped: a swap writes the cache line, which an idle
// call's line need not pay. Without (32-bit hosts), the difference from
// the last read: the packets modulo 2^32 (reads are at most a minute
// apart), the bytes whole if they went back (a slot filled anew behind
// the daemon's back: no such writer, but never a huge delta).
func (l *lines) take(s int) (pkts, byts uint64) {
	o := s * slotSize
	if l.swaps {
		if p := l.word(o + valPackets); atomic.LoadUint32(p) != 0 {
			pkts = uint64(atomic.SwapUint32(p, 0))
		}
		if b := l.dword(o + valBytes); atomic.LoadUint64(b) != 0 {
			byts = atomic.SwapUint64(b, 0)
		}
		return pkts, byts
	}
	p, b := atomic.LoadUint32(l.word(o+valPackets)), l.bytes(o)
	pkts, byts = uint64(p-l.pkts[s]), b-l.byts[s]
	if b < l.byts[s] {
		pkts, byts = uint64(p), b
	}
	l.pkts[s], l.byts[s] = p, b
	return pkts, byts
}

// bytes reads the byte counter at o: twice until it agrees, where the
// runtime makes a 64-bit load of two 32-bit ones (mips) and the
// program's add could fall between them.
func (l *lines) bytes(o int) uint64 {
	for {
		a := atomic.LoadUint64(l.dword(o + valBytes))
		if unsafe.Sizeof(uintptr(0)) == 8 || a == atomic.LoadUint64(l.dword(o+valBytes)) {
			return a
		}
	}
}

// find returns the slot holding k, if its line has it.
func (l *lines) find(k key) (int, bool) {
	first := int(lineOf(k, l.shift)) * 2
	for s := first; s < first+2; s++ {
		if l.used(s) && l.key(s) == k {
			return s, true
		}
	}
	return 0, false
}

// put writes k -> v into a free slot of k's line, value first and the
// key's first word last, so that a packet matching the key finds the
// whole value; false when the line has no free slot.
func (l *lines) put(k key, v value) bool {
	first := int(lineOf(k, l.shift)) * 2
	now := l.now()
	for s := first; s < first+2; s++ {
		if l.used(s) || now-l.freed[s] < int64(slotGrace) {
			continue
		}
		o := s * slotSize
		var b [valueSize]byte
		v.Byts, v.Packets = 0, 0
		binary.Encode(b[:], binary.NativeEndian, v)
		atomic.StoreUint64(l.dword(o+valBytes), 0)
		atomic.StoreUint32(l.word(o+valPackets), 0)
		atomic.StoreUint32(l.word(o+valAddr), binary.NativeEndian.Uint32(b[valAddr:]))
		atomic.StoreUint32(l.word(o+valCallID), binary.NativeEndian.Uint32(b[valCallID:]))
		for i := keySize - 4; i >= 0; i -= 4 {
			atomic.StoreUint32(l.word(o+slotKey+i), binary.NativeEndian.Uint32(k[i:]))
		}
		if !l.swaps {
			l.pkts[s], l.byts[s] = 0, 0
		}
		return true
	}
	return false
}

// empty clears slot s and returns its last counters (take): the key's
// first word first, so that no packet matches it any more, then the
// address, so that a program that matched the key just before finds no
// mapping.
func (l *lines) empty(s int) (pkts, byts uint64) {
	o := s * slotSize
	atomic.StoreUint32(l.word(o+slotKey), 0)
	pkts, byts = l.take(s)
	atomic.StoreUint32(l.word(o+valAddr), 0)
	l.freed[s] = l.now()
	return pkts, byts
}
