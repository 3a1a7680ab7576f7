#!/bin/sh
# Build steps of the Docker image's build stage (deploy/Dockerfile), kept
# in a script so they run, and are tested (deploy/check.sh), without a
# Docker engine:
#
#   deploy/docker-build.sh OUT [VERSION]
#
# builds a static pptpgw (CGO off, version stamped) at OUT from the module
# in the current directory and checks it: it must run, print VERSION and
# be statically linked (the runtime image has no Go and no libc match).
set -eu
out=${1:?usage: docker-build.sh OUT [VERSION]}
version=${2:-dev}
GO=${GO:-go}
CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-s -w -X main.version=$version" -o "$out" ./cmd/pptpgw
got=$("$out" version)
if [ "$got" != "pptpgw $version" ]; then
	echo "docker-build.sh: $out version printed '$got', want 'pptpgw $version'" >&2
	exit 1
fi
if command -v readelf >/dev/null 2>&1 && readelf -l "$out" | grep -q INTERP; then
	echo "docker-build.sh: $out is dynamically linked" >&2
	exit 1
fi
echo "docker-build.sh: built $got at $out"
