package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/pptpgw/pptpgw/cmd/pptpgw/admin"
	"github.com/pptpgw/pptpgw/cmd/pptpgw/config"
	"github.com/pptpgw/pptpgw/nat/events"
)

// filterQuery is the configuration's filter as the admin socket's query
// parameters: inside, peer, and type (events) or state (calls).
func filterQuery(f config.Filter) url.Values {
	q := url.Values{}
	if len(f.Inside) > 0 {
		q.Set("inside", events.JoinPrefixes(f.Inside))
	}
	if len(f.Peer) > 0 {
		q.Set("peer", events.JoinPrefixes(f.Peer))
	}
	if len(f.Types) > 0 {
		q.Set("type", strings.Join(f.Types, ","))
	}
	if len(f.States) > 0 {
		q.Set("state", strings.Join(f.States, ","))
	}
	return q
}

// cmdEvents is `pptpgw events`, the `conntrack -E` of PPTP: one line per
// event as it happens, until interrupted. With --json each line is the
// stream's own (GET /v1/events), byte for byte.
func cmdEvents(args []string, stdout, stderr io.Writer) int {
	cfg, err := config.Parse(config.CmdEvents, args, os.Environ())
	if err != nil {
		return configError(err, config.CmdEvents, stderr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = admin.NewClient(cfg.AdminSocket).Events(ctx, filterQuery(cfg.Filter), func(line []byte) error {
		switch {
		case line == nil: // the stream is open
			if !cfg.JSON {
				admin.PrintEventHeader(stdout)
			}
			return nil
		case cfg.JSON:
			_, err := stdout.Write(append(line, '\n'))
			return err
		}
		return printEventLine(stdout, line)
	})
	if err != nil {
		fmt.Fprintf(stderr, "pptpgw events: %v\n", err)
		return 1
	}
	return 0
}

// printEventLine prints one line of the stream as a table row.
func printEventLine(w io.Writer, line []byte) error {
	var v admin.EventView
	if err := json.Unmarshal(line, &v); err != nil {
		return fmt.Errorf("bad line from the daemon: %w: %q", err, line)
	}
	var count uint64
	if v.Type == string(events.Lost) {
		var l admin.LostView
		json.Unmarshal(line, &l)
		count = l.Count
	}
	admin.PrintEvent(w, v, count)
	return nil
}

// SubscribeEvents serves GET /v1/events (admin.EventSource).
func (d *daemon) SubscribeEvents(f events.Filter) *events.Sub {
	return d.gw.Events().Subscribe(f, 0)
}
