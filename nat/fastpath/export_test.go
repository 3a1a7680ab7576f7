package fastpath

import "unsafe"

var ConvergeGap = convergeGap

// SizeofApplied is the bytes a mapping costs per tier (and its slot in
// the slice's spare capacity).
const SizeofApplied = unsafe.Sizeof(applied{})

// Moved keeps c1 as a mapping's last read, then returns what moved to c2
// (the mirror's arithmetic on the low bits it keeps).
func Moved(c1, c2 Counters) (pkts, byts uint64) {
	var a applied
	a.keep(dirIn, c1)
	return a.moved(dirIn, c2)
}

func (r *Reconciler) CounterTicks() int { return r.counterTicks() }
