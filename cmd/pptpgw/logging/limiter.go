package logging

import (
	"sync"
	"time"
)

// Limiter lets one event per key through per interval: "log this malformed message from
// 203.0.113.5 at most once a minute". Unlike zap's sampler, which groups by message text, it
// groups by a key the caller chooses (peer address, reason) and keeps per-key memory bounded.
//
// A Limiter is safe for concurrent use. Time is passed in (Allow's now), so callers on the
// packet path reuse the time they already have and tests need no clock.
type Limiter struct {
	interval time.Duration
	maxKeys  int

	mu        sync.Mutex
	keys      map[string]*entry
	overflow  entry // shared by the keys that find the table full
	lastSweep time.Time
}

type entry struct {
	last       time.Time // when the key was last allowed
	suppressed uint64    // events refused since then
}

// NewLimiter returns a Limiter allowing one event per key per interval and remembering at most
// maxKeys keys (at least 1). When the table is full, keys whose interval has passed are evicted;
// if none are, new keys share a single allowance until some are.
func NewLimiter(interval time.Duration, maxKeys int) *Limiter {
	if maxKeys < 1 {
		maxKeys = 1
	}
	return &Limiter{interval: interval, maxKeys: maxKeys, keys: make(map[string]*entry)}
}

// Allow reports whether an event for key at time now should be logged: true for the first event
// of a key and then at most once per interval.
func (l *Limiter) Allow(key string, now time.Time) bool {
	ok, _ := l.Check(key, now)
	return ok
}

// Check is Allow that also returns how many events of key were refused since it was last
// allowed, for a "suppressed" field in the line that is logged. suppressed is 0 when ok is false.
func (l *Limiter) Check(key string, now time.Time) (ok bool, suppressed uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.keys[key]
	if e == nil {
		if len(l.keys) >= l.maxKeys {
			l.sweep(now)
		}
		if len(l.keys) < l.maxKeys {
			l.keys[key] = &entry{last: now}
			return true, 0
		}
		// Still full of live keys: new keys share one allowance, so a flood of distinct keys
		// still logs something, once per interval, in bounded memory. Its zero time lets the
		// first overflow through at once.
		e = &l.overflow
	}
	if now.Sub(e.last) < l.interval {
		e.suppressed++
		return false, 0
	}
	suppressed = e.suppressed
	e.last, e.suppressed = now, 0
	return true, suppressed
}

// sweep evicts keys whose interval has passed. It runs at most once per interval, so a flood of
// new keys against a table full of live ones costs a map lookup each, not a scan each.
func (l *Limiter) sweep(now time.Time) {
	if !l.lastSweep.IsZero() && now.Sub(l.lastSweep) < l.interval {
		return
	}
	l.lastSweep = now
	for k, e := range l.keys {
		if now.Sub(e.last) >= l.interval {
			delete(l.keys, k)
		}
	}
}

// Len returns the number of keys remembered (for tests and a gauge).
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}
