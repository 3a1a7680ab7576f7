// Package silence keeps the router's own stack from telling a PPTP peer
// that its GRE is unwelcome (issue 12): one ICMP protocol- or
// port-unreachable (or any fatal error) quoting GRE makes pptpd's and
// pptp-linux's GRE socket fail, and they end every call with the router.
//
// nat/rules' PPTPGW-SILENCE chain does this in iptables, but an operator's
// firewall reload (`iptables-restore` without --noflush) deletes it, and
// until the daemon puts it back, GRE that is no longer queued reaches the
// stack. So the same drop also lives in an nf_tables table of its own,
// which no iptables reload touches:
//
//	table ip pptpgw_silence {
//	  chain icmp_out { type filter hook output priority raw; policy accept;
//	    ip protocol icmp @th,0,8 3 @th,8,8 != 4 @th,136,8 47 counter drop
//	    ip protocol icmp @th,0,8 12 @th,136,8 47 counter drop } }
//
// (@th,0,8 is the ICMP type, @th,8,8 the code, @th,136,8 the quoted IPv4
// header's protocol: fragmentation-needed stays, for inside clients' path
// MTU; time-exceeded is a soft error.) Ensure re-creates it when it is
// missing or changed (`nft flush ruleset`).
package silence

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Names in the kernel.
const (
	TableName = "pptpgw_silence"
	ChainName = "icmp_out"
)

// Table is the nf_tables side of the silence.
type Table struct {
	opts []nftables.ConnOption
}

// New returns the table of the caller's network namespace (netns 0) or of
// the namespace file descriptor netns (tests).
func New(netns int) *Table {
	t := &Table{}
	if netns != 0 {
		t.opts = append(t.opts, nftables.WithNetNSFd(netns))
	}
	return t
}

var table = &nftables.Table{Family: nftables.TableFamilyIPv4, Name: TableName}

// rules are the chain's rules: destination-unreachable other than
// fragmentation-needed, and parameter-problem, quoting GRE.
func rules() [][]expr.Any {
	isICMP := []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 9, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMP}},
	}
	field := func(off uint32, op expr.CmpOp, v byte) []expr.Any {
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: 1},
			&expr.Cmp{Op: op, Register: 1, Data: []byte{v}},
		}
	}
	quotesGRE := field(17, expr.CmpOpEq, unix.IPPROTO_GRE)
	drop := []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}
	cat := func(parts ...[]expr.Any) []expr.Any {
		var out []expr.Any
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	return [][]expr.Any{
		cat(isICMP, field(0, expr.CmpOpEq, 3), field(1, expr.CmpOpNeq, 4), quotesGRE, drop),
		cat(isICMP, field(0, expr.CmpOpEq, 12), quotesGRE, drop),
	}
}

// Ensure checks that the table is there with its chain and rules and
// (re)creates it in one transaction when not; it reports whether it did.
func (t *Table) Ensure() (created bool, err error) {
	c, err := nftables.New(t.opts...)
	if err != nil {
		return false, fmt.Errorf("nftables: %w", err)
	}
	if ok, err := t.inPlace(c); err != nil || ok {
		return false, err
	}
	c.AddTable(table)
	c.DelTable(table) // whatever was there under this name
	c.AddTable(table)
	accept := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: ChainName, Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityRaw, Policy: &accept})
	for _, e := range rules() {
		c.AddRule(&nftables.Rule{Table: table, Chain: ch, Exprs: e})
	}
	if err := c.Flush(); err != nil {
		return false, fmt.Errorf("create nftables table %s: %w", TableName, err)
	}
	return true, nil
}

// inPlace reports whether the chain holds exactly its two rules.
func (t *Table) inPlace(c *nftables.Conn) (bool, error) {
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return false, fmt.Errorf("list nftables tables: %w", err)
	}
	found := false
	for _, tb := range tables {
		found = found || tb.Name == TableName
	}
	if !found {
		return false, nil
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return false, fmt.Errorf("list nftables chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table.Name == TableName && ch.Name == ChainName && ch.Hooknum != nil && *ch.Hooknum == *nftables.ChainHookOutput {
			rs, err := c.GetRules(table, ch)
			if err != nil {
				return false, fmt.Errorf("list nftables rules: %w", err)
			}
			return len(rs) == len(rules()), nil
		}
	}
	return false, nil
}

// Dropped returns how many ICMP errors the table has dropped since it was
// created (its rules' counters).
func (t *Table) Dropped() (uint64, error) {
	c, err := nftables.New(t.opts...)
	if err != nil {
		return 0, fmt.Errorf("nftables: %w", err)
	}
	rs, err := c.GetRules(table, &nftables.Chain{Name: ChainName, Table: table})
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, r := range rs {
		for _, e := range r.Exprs {
			if ctr, ok := e.(*expr.Counter); ok {
				n += ctr.Packets
			}
		}
	}
	return n, nil
}

// Remove deletes the table; a missing one is not an error.
func (t *Table) Remove() error {
	c, err := nftables.New(t.opts...)
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	c.AddTable(table)
	c.DelTable(table)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete nftables table %s: %w", TableName, err)
	}
	return nil
}
