//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/e2e/lab"
)

// streamEvent is one line of `pptpgw events --json`.
type streamEvent struct {
	Type       string  `json:"type"`
	ID         string  `json:"id"`
	InsideAddr string  `json:"inside_addr"`
	Reason     string  `json:"reason"`
	Path       string  `json:"path"`
	Count      uint64  `json:"count"`
	Duration   float64 `json:"duration_seconds"`
	Call       *struct {
		PacketsIn  uint64 `json:"packets_in"`
		PacketsOut uint64 `json:"packets_out"`
	} `json:"call"`
}

// readEvents parses what an events process wrote so far (its log: a
// "# command" line, then its output).
func readEvents(t *testing.T, p *lab.Proc) []streamEvent {
	t.Helper()
	b, err := os.ReadFile(p.Log)
	if err != nil {
		t.Fatal(err)
	}
	var out []streamEvent
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "# ") {
			continue
		}
		var e streamEvent
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("%s: not a JSON line: %q", p.Name, line)
		}
		out = append(out, e)
	}
	return out
}

// typesOf lists the types of the events of inside address in, in order.
func typesOf(evs []streamEvent, in string) []string {
	var ts []string
	for _, e := range evs {
		if e.InsideAddr == in {
			ts = append(ts, e.Type)
		}
	}
	return ts
}

// before checks that each of want appears in ts, in that order.
func inOrder(ts []string, want ...string) error {
	i := 0
	for _, t := range ts {
		if i < len(want) && t == want[i] {
			i++
		}
	}
	if i < len(want) {
		return fmt.Errorf("events %v lack %v in order (got up to %d)", ts, want, i)
	}
	return nil
}

// TestEvents: `pptpgw events --json` running while two pptp-linux clients
// set up calls through pptpgw (--gre-path kernel) and one clears its own
// prints, for that client, the control connection opened, the call
// requested, set up, entering the kernel fast path, torn down with its
// reason, duration and counters, leaving the fast path, and the
// connection closed. A second reader with --inside and --type sees only
// the other client's call events, and the table form prints one row per
// event under its header.
func TestEvents(t *testing.T) {
	t.Parallel()
	tp := newGWTopo(t, 2)
	l := tp.l
	gw := tp.gw.StartGateway(lab.GatewayConfig{InstallRules: true, Args: []string{"--gre-path", "kernel"}})
	bin := l.PptpgwPath()
	all := tp.gw.Start("events-all", bin, "events", "--json", "--admin-socket", gw.AdminSocket)
	some := tp.gw.Start("events-some", bin, "events", "--json", "--admin-socket", gw.AdminSocket,
		"--inside", clientIP(1)+"/32", "--type", "call")
	table := tp.gw.Start("events-table", bin, "events", "--admin-socket", gw.AdminSocket)
	l.MustWaitFor("3 event readers subscribed", func() error {
		if n := gw.MustStats()["event_streams_active"]; n != 3 {
			return fmt.Errorf("event_streams_active %d", n)
		}
		return nil
	}, 5*time.Second)

	srv := tp.srv.StartPPTPD(lab.PPTPDConfig{})
	var clients []*lab.PPTPClient
	for i, c := range tp.clients {
		clients = append(clients, c.StartPPTPClient(lab.PPTPClientConfig{Server: serverIP, LocalBind: clientIP(i)}))
	}
	_ = srv
	waitCalls(l, gw, 2, nil, 20*time.Second)
	l.MustWaitFor("both calls in the fast path", func() error {
		return inOrder(typesOf(readEvents(t, all), clientIP(0)), "fast-enter")
	}, 5*time.Second)
	time.Sleep(2 * time.Second) // some GRE through the kernel for the counters
	clients[0].PPTP.Signal(syscall.SIGTERM)
	callGone(l, gw, clientIP(0), 5*time.Second)
	l.MustWaitFor("client 1's call torn down and its connection closed in the stream", func() error {
		return inOrder(typesOf(readEvents(t, all), clientIP(0)), "conn-open", "call-request", "call-up", "call-down", "conn-close")
	}, 10*time.Second)

	evs := readEvents(t, all)
	c0 := typesOf(evs, clientIP(0))
	for _, want := range [][]string{{"call-up", "fast-enter", "fast-leave"}, {"call-down", "conn-close"}} {
		if err := inOrder(c0, want...); err != nil {
			t.Error(err)
		}
	}
	for _, e := range evs {
		switch {
		case e.Type == "lost":
			t.Errorf("a fast reader lost %d events", e.Count)
		case e.Type == "call-down" && e.InsideAddr == clientIP(0):
			if e.Reason == "" || e.Duration < 2 || e.Call == nil || e.Call.PacketsIn == 0 || e.Call.PacketsOut == 0 {
				t.Errorf("call-down without reason, duration or counters: %+v %+v", e, e.Call)
			}
		case e.Type == "fast-enter" && e.Path != "kernel":
			t.Errorf("fast-enter on path %q", e.Path)
		}
	}
	if err := inOrder(typesOf(evs, clientIP(1)), "conn-open", "call-request", "call-up", "fast-enter"); err != nil {
		t.Error(err)
	}

	filtered := readEvents(t, some)
	var ft []string
	for _, e := range filtered {
		if e.InsideAddr != clientIP(1) || !strings.HasPrefix(e.Type, "call-") {
			t.Errorf("--inside %s --type call let through %+v", clientIP(1), e)
		}
		ft = append(ft, e.Type)
	}
	if !slices.Equal(ft, []string{"call-request", "call-up"}) {
		t.Errorf("filtered stream %v, want [call-request call-up]", ft)
	}

	b, _ := os.ReadFile(table.Log)
	out := string(b)
	if !strings.Contains(out, "TIME") || !strings.Contains(out, "DETAIL") || strings.Count(out, " call-up ") != 2 ||
		!strings.Contains(out, "reason=") {
		t.Errorf("table form:\n%s", out)
	}
	t.Logf("events:\n%s", out)

	// pptpgw calls with the same filters, server-side.
	one := tp.gw.MustPptpgw("calls", "--json", "--admin-socket", gw.AdminSocket, "--inside", clientIP(1), "--state", "established")
	none := tp.gw.MustPptpgw("calls", "--json", "--admin-socket", gw.AdminSocket, "--peer", "10.0.0.0/8")
	if strings.Count(one, `"id"`) != 1 || !strings.Contains(one, clientIP(1)) || none != "{\"calls\":[]}\n" {
		t.Errorf("calls --inside: %s; calls --peer 10.0.0.0/8: %s", one, none)
	}
	for _, p := range []*lab.Proc{all, some, table} {
		p.Signal(syscall.SIGINT)
		if err := p.Wait(5 * time.Second); err != nil {
			t.Errorf("%s on SIGINT: %v", p.Name, err)
		}
	}
}
