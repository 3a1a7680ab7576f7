package logging

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	type step struct {
		key        string
		at         float64
		want       bool
		suppressed uint64
	}
	tests := []struct {
		name    string
		maxKeys int
		steps   []step
	}{
		{name: "once per interval per key", maxKeys: 10, steps: []step{
			{"a", 0, true, 0},
			{"a", 1, false, 0},
			{"b", 1, true, 0}, // other keys are independent
			{"a", 9.9, false, 0},
			{"a", 10, true, 2}, // two refused since
			{"a", 10, false, 0},
			{"b", 30, true, 0},
		}},
		{name: "full table evicts expired keys", maxKeys: 2, steps: []step{
			{"a", 0, true, 0},
			{"b", 5, true, 0},
			{"c", 11, true, 0}, // a expired and is evicted
			{"a", 11, true, 0}, // full again ({b, c}) and swept at 11 already: a takes the overflow allowance
		}},
		{name: "full of live keys shares one allowance", maxKeys: 2, steps: []step{
			{"a", 0, true, 0},
			{"b", 0, true, 0},
			{"c", 1, true, 0},  // overflow allowance, first use
			{"d", 2, false, 0}, // overflow used up
			{"e", 3, false, 0},
			{"a", 3, false, 0}, // known keys keep their own allowance
			{"f", 11, true, 0}, // sweep at 11 frees a and b: f gets a slot of its own
			{"g", 11, true, 0},
			{"h", 11.5, true, 2}, // full again, sweep ran at 11: overflow, 2 suppressed since 1
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLimiter(10*time.Second, tt.maxKeys)
			for i, s := range tt.steps {
				ok, n := l.Check(s.key, at(s.at))
				if ok != s.want || n != s.suppressed {
					t.Errorf("step %d (%s at %gs): Check = %v, %d; want %v, %d", i, s.key, s.at, ok, n, s.want, s.suppressed)
				}
				if l.Len() > tt.maxKeys {
					t.Errorf("step %d: %d keys, more than %d", i, l.Len(), tt.maxKeys)
				}
			}
		})
	}
}

func TestLimiterConcurrent(t *testing.T) {
	l := NewLimiter(time.Hour, 64)
	now := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				if l.Allow(fmt.Sprintf("k%d", (i+g)%32), now) {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if allowed != 32 {
		t.Errorf("allowed %d, want one per key (32)", allowed)
	}
}

func BenchmarkLimiterAllow(b *testing.B) {
	l := NewLimiter(time.Minute, 1024)
	now := time.Now()
	keys := []string{"malformed 203.0.113.5", "refused 192.168.1.10", "malformed 198.51.100.1"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		l.Allow(keys[i%len(keys)], now)
	}
}
