package rules

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// operatorRules are an operator's own rules in the tables pptpgw uses,
// which a repair must leave where they are.
func operatorRules(f *Memory) {
	_ = f.Append(TableMangle, "FORWARD", "-p", "tcp", "-j", "TCPMSS", "--clamp-mss-to-pmtu")
	_ = f.Append(TableRaw, "PREROUTING", "-p", "udp", "--dport", "53", "-j", "CT", "--notrack")
}

// wipe is what `iptables-restore` of a ruleset without pptpgw's chains
// does to the tables it names: every chain flushed, user chains deleted,
// then the ruleset's own rules added.
func wipe(f *Memory) {
	for _, t := range []string{TableRaw, TableMangle} {
		var keep []*memChain
		for _, c := range f.tables[t] {
			if c.builtin {
				c.rules = nil
				keep = append(keep, c)
			}
		}
		f.tables[t] = keep
	}
	operatorRules(f)
}

func TestRepair(t *testing.T) {
	cfg := Config{Queue: 2, Queues: 2}
	tests := []struct {
		name   string
		mutate func(t *testing.T, f *Memory)
		// removed and restored: how many rules/chains Repair deletes and adds.
		removed, restored int
	}{
		{"in place", func(*testing.T, *Memory) {}, 0, 0},
		{"firewall reload without --noflush", func(_ *testing.T, f *Memory) { wipe(f) }, 0, 7 + 20},
		{"one rule deleted", func(_ *testing.T, f *Memory) {
			_ = f.Delete(TableRaw, ChainSilence, Desired(cfg)[5].Spec...)
		}, 0, 1},
		{"jumps deleted", func(t *testing.T, f *Memory) {
			_ = f.Delete(TableRaw, "PREROUTING", jumpSpec(t, cfg, ChainNoTrack)...)
			_ = f.Delete(TableRaw, "OUTPUT", jumpSpec(t, cfg, ChainSilence)...)
		}, 0, 2},
		{"rule replaced", func(_ *testing.T, f *Memory) {
			c := f.chain(TableMangle, ChainGREOut)
			c.rules[0] = SavedRule{Line: "-A " + ChainGREOut + " -p gre -j NFQUEUE --queue-num 99"}
		}, 1, 1},
		{"rules swapped", func(_ *testing.T, f *Memory) {
			c := f.chain(TableRaw, ChainGREIn)
			c.rules[0], c.rules[2] = c.rules[2], c.rules[0]
		}, 3, 3},
		{"jump added twice", func(t *testing.T, f *Memory) {
			_ = f.Append(TableRaw, "PREROUTING", jumpSpec(t, cfg, ChainNoTrack)...)
		}, 3, 2},
		{"jumps swapped", func(t *testing.T, f *Memory) {
			_ = f.Delete(TableRaw, "PREROUTING", jumpSpec(t, cfg, ChainNoTrack)...)
			_ = f.Append(TableRaw, "PREROUTING", jumpSpec(t, cfg, ChainNoTrack)...)
		}, 2, 2},
		{"jump from elsewhere", func(_ *testing.T, f *Memory) {
			_ = f.Append(TableMangle, "PREROUTING", "-p", "gre", "-j", ChainGREOut)
		}, 1, 0},
		{"stray chain", func(_ *testing.T, f *Memory) {
			_ = f.NewChain(TableRaw, "PPTPGW-OLD")
			_ = f.Append(TableRaw, "PPTPGW-OLD", "-j", "ACCEPT")
		}, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewMemory()
			operatorRules(f)
			if _, err := Install(f, cfg); err != nil {
				t.Fatal(err)
			}
			want := f.Dump()
			tt.mutate(t, f)
			diff, _ := Verify(f, cfg)
			rep, err := Repair(f, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(rep.Differences, "\n") != strings.Join(diff, "\n") {
				t.Errorf("Differences = %q, want Verify's %q", rep.Differences, diff)
			}
			if got := len(rep.Removed) + len(rep.RemovedChains); got != tt.removed {
				t.Errorf("removed %d (%v %v), want %d", got, strs(rep.Removed), rep.RemovedChains, tt.removed)
			}
			if rep.Restored() != tt.restored {
				t.Errorf("restored %d (%+v), want %d", rep.Restored(), rep.Added, tt.restored)
			}
			if got := f.Dump(); got != want {
				t.Errorf("after Repair:\n%s\nwant:\n%s", got, want)
			}
			if d, err := Verify(f, cfg); err != nil || len(d) != 0 {
				t.Errorf("Verify after Repair: %q, %v", d, err)
			}
			// Idempotent: a second round reads and changes nothing.
			n := len(f.Calls)
			rep, err = Repair(f, cfg)
			if err != nil || len(rep.Differences) != 0 || rep.Restored() != 0 || len(rep.Removed) != 0 {
				t.Errorf("second Repair = %+v, %v", rep, err)
			}
			if len(f.Calls) != n {
				t.Errorf("second Repair changed iptables: %q", f.Calls[n:])
			}
		})
	}
}

// TestRepairOtherQueue: rules of another configuration are replaced by
// this one's (the daemon's own configuration wins while it runs).
func TestRepairOtherQueue(t *testing.T) {
	f := NewMemory()
	if _, err := Install(f, Config{Queue: 8}); err != nil {
		t.Fatal(err)
	}
	if _, err := Repair(f, Config{Queue: 0}); err != nil {
		t.Fatal(err)
	}
	if d, _ := Verify(f, Config{Queue: 0}); len(d) != 0 {
		t.Errorf("Verify after Repair: %q", d)
	}
}

func TestKeeper(t *testing.T) {
	cfg := Config{}
	for _, fix := range []bool{true, false} {
		name := map[bool]string{true: "repair", false: "report only"}[fix]
		t.Run(name, func(t *testing.T) {
			f := NewMemory()
			if _, err := Install(f, cfg); err != nil {
				t.Fatal(err)
			}
			core, logs := observer.New(zap.InfoLevel)
			k := NewKeeper(f, cfg, fix, zap.New(core))
			stats := func() map[string]uint64 { s := map[string]uint64{}; k.Stats(s); return s }
			if _, err := k.Check(); err != nil || logs.Len() != 0 {
				t.Fatalf("Check in place: %v, logs %v", err, logs.All())
			}
			wipe(f)
			for range 3 {
				if _, err := k.Check(); err != nil {
					t.Fatal(err)
				}
			}
			s := stats()
			d, _ := Verify(f, cfg)
			if fix {
				if len(d) != 0 || s["rules_missing"] != 0 || s["rules_repaired_total"] != 27 || s["rules_repairs_total"] != 1 {
					t.Errorf("after a wipe: Verify %q, stats %v", d, s)
				}
				if logs.FilterMessageSnippet("rules repaired").Len() != 1 {
					t.Errorf("logs %v", logs.All())
				}
				return
			}
			if len(d) != 27 || s["rules_missing"] != 27 || s["rules_repaired_total"] != 0 || s["rules_checks_total"] != 4 {
				t.Errorf("report only: Verify %d lines, stats %v", len(d), s)
			}
			if logs.FilterMessageSnippet("not repaired").Len() != 1 {
				t.Errorf("a lasting difference is logged once: %v", logs.All())
			}
			if _, err := Install(f, cfg); err != nil {
				t.Fatal(err)
			}
			if _, err := k.Check(); err != nil || stats()["rules_missing"] != 0 || logs.FilterMessageSnippet("in place again").Len() != 1 {
				t.Errorf("after install: %v, stats %v, logs %v", err, stats(), logs.All())
			}
		})
	}
}

type fakeSilence struct {
	present bool
	err     error
}

func (s *fakeSilence) Ensure() (bool, error) {
	if s.err != nil || s.present {
		return false, s.err
	}
	s.present = true
	return true, nil
}
func (s *fakeSilence) Dropped() (uint64, error) { return 7, nil }

// TestKeeperSilence: every check makes sure the nf_tables silence table is
// there; a re-creation after the first is logged, a failure logged once.
func TestKeeperSilence(t *testing.T) {
	f := NewMemory()
	if _, err := Install(f, Config{}); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	sil := &fakeSilence{}
	k := NewKeeper(f, Config{}, false, zap.New(core))
	k.Silence = sil
	k.Check()
	k.Check()
	sil.present = false // nft flush ruleset
	k.Check()
	sil.err = errors.New("no nf_tables")
	k.Check()
	k.Check()
	s := map[string]uint64{}
	k.Stats(s)
	if s["silence_table_created_total"] != 2 || s["silence_icmp_dropped"] != 7 || s["rules_check_errors_total"] != 2 {
		t.Errorf("stats %v", s)
	}
	if logs.FilterMessageSnippet("re-created").Len() != 1 || logs.FilterMessageSnippet("unavailable").Len() != 1 {
		t.Errorf("logs %v", logs.All())
	}
}

// fakeTables lists whole tables as `iptables -S` does, built from the
// fake's per-chain listings.
type fakeTables struct{ *Memory }

func (f fakeTables) ListTable(table string) ([]string, error) {
	chains, _ := f.ListChains(table)
	var decl, body []string
	for _, c := range chains {
		l, err := f.List(table, c)
		if err != nil {
			return nil, err
		}
		decl = append(decl, l[0])
		body = append(body, l[1:]...)
	}
	return append(decl, body...), nil
}

// TestReadStateOneListing: reading each table in one listing gives the
// same state as reading it chain by chain.
func TestReadStateOneListing(t *testing.T) {
	f := NewMemory()
	operatorRules(f)
	if _, err := Install(f, Config{Queue: 3}); err != nil {
		t.Fatal(err)
	}
	a, err := readState(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := readState(fakeTables{f})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(a.order) != fmt.Sprint(b.order) || fmt.Sprint(a.rules) != fmt.Sprint(b.rules) {
		t.Errorf("per chain:\n%v\n%v\nper table:\n%v\n%v", a.order, a.rules, b.order, b.rules)
	}
	if rep, err := Repair(fakeTables{f}, Config{Queue: 3}); err != nil || len(rep.Differences) != 0 {
		t.Errorf("Repair through the table listing: %+v, %v", rep, err)
	}
}
