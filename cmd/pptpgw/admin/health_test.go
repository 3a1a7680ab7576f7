package admin

import (
	"bytes"
	"strings"
	"testing"
)

// sickBackend reports problems.
type sickBackend struct {
	fakeBackend
	problems []HealthProblem
}

func (b *sickBackend) Health() []HealthProblem { return b.problems }

// TestHealth: 200 and ok without problems, 503 and each problem otherwise; live only while no
// problem asks for a restart; the client decodes both and PrintHealth says them.
func TestHealth(t *testing.T) {
	for _, tt := range []struct {
		name     string
		problems []HealthProblem
		code     int
		body     string
		live     bool
		printed  string
	}{
		{"healthy", nil, 200, `{"status":"ok","live":true,"problems":[]}`, true, "ok\n"},
		{"table full", []HealthProblem{{Part: "call-table", Detail: "the call table is full"}}, 503,
			`{"status":"fail","live":true,"problems":[{"part":"call-table","detail":"the call table is full","restart":false}]}`, true,
			"fail: 1 problems\n  call-table  the call table is full\n"},
		{"queues unbound", []HealthProblem{{Part: "rules", Detail: "2 rules differ"}, {Part: "queues", Detail: "not bound", Restart: true}}, 503,
			`{"status":"fail","live":false,"problems":[{"part":"rules","detail":"2 rules differ","restart":false},{"part":"queues","detail":"not bound","restart":true}]}`, false,
			"fail: 2 problems (a restart is due)\n  rules       2 rules differ\n  queues      not bound\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, path := startServer(t, &sickBackend{problems: tt.problems}, nil, nil)
			code, hdr, body := request(t, unixHTTP(path), "GET", "http://x/healthz", nil)
			if code != tt.code || body != tt.body+"\n" || hdr.Get("Content-Type") != "application/json" {
				t.Errorf("GET /healthz: %d %s %q, want %d %q", code, hdr.Get("Content-Type"), body, tt.code, tt.body)
			}
			raw, hb, err := NewClient(path).Health(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(string(raw)) != tt.body || hb.Live != tt.live || len(hb.Problems) != len(tt.problems) {
				t.Errorf("client: %q %+v", raw, hb)
			}
			var out bytes.Buffer
			PrintHealth(&out, hb)
			if out.String() != tt.printed {
				t.Errorf("printed %q, want %q", out.String(), tt.printed)
			}
		})
	}
}
