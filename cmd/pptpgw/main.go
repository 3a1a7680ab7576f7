// Command pptpgw is a PPTP NAT gateway: a userspace conntrack helper that
// rewrites PPTP Call IDs and translates enhanced GRE behind NFQUEUE.
package main

import (
	"fmt"
	"io"
	"os"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `usage: pptpgw COMMAND [flags]

commands:
  run      the gateway daemon (NFQUEUE)
  rules    install|remove|show the iptables rules
  calls    the live mapping table (admin socket)
  stats    counters (admin socket)
  events   calls and connections as they happen (admin socket)
  health   what does not work (admin socket); exit 0 when healthy
  replay   run the engine offline over a capture
  check    what is wrong with this host's setup
  version  print the version

Run 'pptpgw COMMAND -h' for a command's flags.
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], os.Stderr)
	case "rules":
		return cmdRules(args[1:], stdout, stderr)
	case "calls":
		return cmdCalls(args[1:], stdout, stderr)
	case "stats":
		return cmdStats(args[1:], stdout, stderr)
	case "events":
		return cmdEvents(args[1:], stdout, stderr)
	case "health":
		return cmdHealth(args[1:], stdout, stderr)
	case "replay":
		return cmdReplay(args[1:], stdout, stderr)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "pptpgw %s\n", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "pptpgw: unknown command %q\n%s", args[0], usage)
	return 2
}
