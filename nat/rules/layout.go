package rules

// Layout is how pptpgw's queues are numbered: N control queues from First
// (TCP 1723, from mangle FORWARD, and the router's own from mangle OUTPUT
// and INPUT: the packet's hook tells them apart), then N GRE/ICMP queues
// (raw PREROUTING, mangle POSTROUTING). The rules, the queue bindings and the
// daemon's reading of which hook a packet came from all use this one type.
type Layout struct {
	First uint16 // --queue
	N     uint16 // --queues; 0 means 1
}

func (l Layout) n() uint16 { return max(l.N, 1) }

// Control returns the first control queue and their number.
func (l Layout) Control() (first, n uint16) { return l.First, l.n() }

// GRE returns the first GRE/ICMP queue and their number.
func (l Layout) GRE() (first, n uint16) { return l.First + l.n(), l.n() }

// Last is the highest queue number in use.
func (l Layout) Last() uint16 { return l.First + 2*l.n() - 1 }

// IsControl reports whether queue q carries control segments.
func (l Layout) IsControl(q uint16) bool { return q >= l.First && q < l.First+l.n() }

// Fits reports whether the layout stays within the kernel's 16-bit queue
// numbers.
func (l Layout) Fits() bool { return int(l.First)+2*int(l.n())-1 <= 65535 }
