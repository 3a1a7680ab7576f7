#!/bin/sh
# make deploy-check: the deploy/ files checked with the tools that can run
# here (no Docker engine, no Kubernetes API server, no systemd as PID 1):
#  1. deploy/docker-build.sh, the Dockerfile's build steps, builds a static
#     pptpgw with the version stamped;
#  2. systemd-analyze verify accepts deploy/pptpgw.service (in a scratch
#     root holding the unit, its commands and systemd's own units, so the
#     unit file is checked exactly as shipped), and its exposure score
#     stays at or below 3.0 (systemd-analyze security --offline);
#  3. the Go checks of the example configuration, the DaemonSet, the
#     compose file, the Dockerfile and deploy/rules.v4.
set -eu
cd "$(dirname "$0")/.."
GO=${GO:-go}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== docker-build.sh"
GO=$GO deploy/docker-build.sh "$tmp/pptpgw" deploy-check-1.2.3

echo "== systemd-analyze verify deploy/pptpgw.service"
if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "systemd-analyze missing: apt-get install systemd" >&2
	exit 1
fi
root=$tmp/root
mkdir -p "$root/usr/bin" "$root/bin" "$root/usr/lib/systemd" "$root/etc/systemd/system"
cp "$tmp/pptpgw" "$root/usr/bin/pptpgw"
cp "$(command -v kill)" "$root/bin/kill" 2>/dev/null || cp /bin/kill "$root/bin/kill"
cp /usr/bin/touch "$root/usr/bin/touch"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
cp deploy/pptpgw.service "$root/etc/systemd/system/"
out=$(systemd-analyze verify --root="$root" pptpgw.service 2>&1) || { echo "$out" >&2; exit 1; }
if [ -n "$out" ]; then
	echo "$out" >&2
	echo "systemd-analyze verify: warnings" >&2
	exit 1
fi
systemd-analyze security --offline=yes --threshold=30 --root="$root" pptpgw.service | tail -1

echo "== go test (deploy files, rules.v4)"
$GO test -count=1 -run 'Deploy' ./cmd/pptpgw/ ./nat/rules/
echo "deploy-check: ok"
