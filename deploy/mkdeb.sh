#!/bin/sh
# deploy/mkdeb.sh BIN ARCH VERSION OUTDIR: the pptpgw .deb for Debian
# architecture ARCH (amd64, arm64) from the static binary BIN, with
# dpkg-deb (nfpm is not packaged for Debian). It holds the binary, the
# systemd unit (not enabled: configure, then `systemctl enable --now
# pptpgw`), the example configuration as a conffile, the man page pptpgw(8), bash and zsh
# completions (all three generated from the option table: go generate ./cmd/pptpgw) and the
# MIT license.
set -eu
bin=${1:?usage: mkdeb.sh BIN ARCH VERSION OUTDIR}
arch=${2:?}
version=${3:?}
outdir=${4:?}
cd "$(dirname "$0")/.."

# Debian versions start with a digit: v1.2.3 -> 1.2.3,
# v1.2.3-4-gabcdef -> 1.2.3+4+gabcdef, 2b71767-dirty (no tag) ->
# 0.0~git2b71767+dirty.
debver=$(printf '%s' "$version" | sed -e 's/^v//' -e 's/-/+/g')
case $debver in
[0-9]*.*) ;;
*) debver="0.0~git$debver" ;;
esac

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 0755 "$root"
install -D -m 0755 "$bin" "$root/usr/bin/pptpgw"
install -D -m 0644 deploy/pptpgw.service "$root/lib/systemd/system/pptpgw.service"
install -D -m 0644 deploy/pptpgw.yaml "$root/etc/pptpgw/pptpgw.yaml"
install -D -m 0644 LICENSE "$root/usr/share/doc/pptpgw/copyright"
install -D -m 0644 deploy/rules.v4 "$root/usr/share/doc/pptpgw/rules.v4"
mkdir -p "$root/usr/share/man/man8"
gzip -9 -n <docs/pptpgw.8 >"$root/usr/share/man/man8/pptpgw.8.gz"
chmod 0644 "$root/usr/share/man/man8/pptpgw.8.gz"
install -D -m 0644 deploy/completion/pptpgw.bash "$root/usr/share/bash-completion/completions/pptpgw"
install -D -m 0644 deploy/completion/_pptpgw "$root/usr/share/zsh/vendor-completions/_pptpgw"
mkdir -p "$root/DEBIAN"
echo /etc/pptpgw/pptpgw.yaml >"$root/DEBIAN/conffiles"
size=$(du -k -s "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: pptpgw
Version: $debver
Architecture: $arch
Maintainer: pptpgw developers <pptpgw@users.noreply.github.com>
Installed-Size: $size
Depends: iptables
Suggests: conntrack, tcpdump
Section: net
Priority: optional
Homepage: https://github.com/pptpgw/pptpgw
Description: PPTP NAT gateway (userspace conntrack helper for PPTP)
 pptpgw lets several PPTP clients behind one NAT address reach the same
 server: iptables hands it the control connection (TCP 1723) and the
 enhanced GRE through NFQUEUE; it rewrites Call IDs and maps each GRE flow
 back to its inside client. \`pptpgw check\` says what a host still needs.
CONTROL
mkdir -p "$outdir"
deb="$outdir/pptpgw_${debver}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
