package main

import (
	"fmt"
	"io"
	"os"

	"github.com/pptpgw/pptpgw/cmd/pptpgw/check"
	"github.com/pptpgw/pptpgw/cmd/pptpgw/config"
)

// cmdCheck is `pptpgw check [--json]`: one line per check, exit 1 when
// any fails. It reads the same configuration as `rules` to know which
// rules and queues to expect.
func cmdCheck(args []string, stdout, stderr io.Writer) int {
	cfg, err := config.Parse(config.CmdCheck, args, os.Environ())
	if err != nil {
		return configError(err, config.CmdCheck, stderr)
	}
	facts := check.Gather(rulesConfig(cfg), cfg.GREPath, cfg.BPFPinDir)
	check.GatherDaemon(facts, cfg.AdminSocket) // what the running daemon says
	rs := check.Run(facts)
	if cfg.JSON {
		if err := check.PrintJSON(stdout, rs); err != nil {
			fmt.Fprintf(stderr, "pptpgw check: %v\n", err)
			return 1
		}
	} else {
		check.Print(stdout, rs)
	}
	if check.Failed(rs) {
		return 1
	}
	return 0
}
