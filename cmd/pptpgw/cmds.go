package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pptpgw/pptpgw/cmd/pptpgw/admin"
	"github.com/pptpgw/pptpgw/cmd/pptpgw/config"
	"github.com/pptpgw/pptpgw/nat/nft"
	"github.com/pptpgw/pptpgw/nat/rules"
	"github.com/pptpgw/pptpgw/nat/silence"
)

// configError prints a configuration error as one line: usage help exits
// 0, anything else 2.
func configError(err error, sub string, stderr io.Writer) int {
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stderr, config.Usage(sub))
		return 0
	}
	fmt.Fprintf(stderr, "pptpgw %s: %v\n", sub, err)
	return 2
}

// cmdRules is `pptpgw rules install|remove|show`.
func cmdRules(args []string, stdout, stderr io.Writer) int {
	cfg, err := config.Parse(config.CmdRules, args, os.Environ())
	if err != nil {
		return configError(err, config.CmdRules, stderr)
	}
	ipt, err := rules.New("")
	if err != nil {
		fmt.Fprintf(stderr, "pptpgw rules: %v\n", err)
		return 1
	}
	switch cfg.Action {
	case config.RulesInstall:
		rep, err := rules.Install(ipt, rulesConfig(cfg))
		if err != nil {
			fmt.Fprintf(stderr, "pptpgw rules install: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "installed %d chains and %d rules\n", len(rep.Chains), len(rep.Rules))
	case config.RulesRemove:
		if err := rules.Remove(ipt); err != nil {
			fmt.Fprintf(stderr, "pptpgw rules remove: %v\n", err)
			return 1
		}
		// The kernel GRE fast path's table (--gre-path kernel) goes too;
		// a host without nf_tables has none.
		if _, err := nft.RemoveTable(); err != nil && nft.Available() {
			fmt.Fprintf(stderr, "pptpgw rules remove: %v\n", err)
			return 1
		}
		if err := silence.New(0).Remove(); err != nil && nft.Available() { // run's own table
			fmt.Fprintf(stderr, "pptpgw rules remove: %v\n", err)
			return 1
		}
		// The bpf path's programs, maps and attachments (--gre-path bpf).
		if _, err := removeBPF(cfg.BPFPinDir); err != nil {
			fmt.Fprintf(stderr, "pptpgw rules remove: %v\n", err)
			return 1
		}
	case config.RulesShow:
		lines, err := rules.Show(ipt)
		if err != nil {
			fmt.Fprintf(stderr, "pptpgw rules show: %v\n", err)
			return 1
		}
		for _, l := range lines {
			fmt.Fprintln(stdout, l)
		}
		if diff, err := rules.Verify(ipt, rulesConfig(cfg)); err == nil && len(diff) > 0 {
			for _, l := range diff {
				fmt.Fprintf(stdout, "# differs from this configuration: %s\n", l)
			}
		}
	}
	return 0
}

// cmdCalls is `pptpgw calls` and cmdStats `pptpgw stats`: read the admin socket.
func cmdCalls(args []string, stdout, stderr io.Writer) int {
	cfg, err := config.Parse(config.CmdCalls, args, os.Environ())
	if err != nil {
		return configError(err, config.CmdCalls, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, calls, err := admin.NewClient(cfg.AdminSocket).CallsWhere(ctx, filterQuery(cfg.Filter)) // events.go
	if err != nil {
		fmt.Fprintf(stderr, "pptpgw calls: %v\n", err)
		return 1
	}
	if cfg.JSON {
		stdout.Write(raw)
		return 0
	}
	admin.PrintCalls(stdout, calls)
	return 0
}

func cmdStats(args []string, stdout, stderr io.Writer) int {
	cfg, err := config.Parse(config.CmdStats, args, os.Environ())
	if err != nil {
		return configError(err, config.CmdStats, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, stats, err := admin.NewClient(cfg.AdminSocket).Stats(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "pptpgw stats: %v\n", err)
		return 1
	}
	if cfg.JSON {
		stdout.Write(raw)
		return 0
	}
	admin.PrintStats(stdout, stats)
	return 0
}
