#!/bin/sh
# deploy/check-cross.sh DIST VERSION: the release binaries built for routers run under
# qemu-user (qemu-user-static; no binfmt needed, the emulator is called directly) and behave
# as the amd64 binary does: `pptpgw version` prints VERSION, and `pptpgw replay` of real
# captures prints the same summary and writes the same outside and inside pcaps, byte for
# byte. arm64 and mipsle are required; arm and mips (big-endian) are checked when their
# emulator is there too.
set -eu
dist=${1:?usage: check-cross.sh DIST VERSION}
version=${2:?}
cd "$(dirname "$0")/.."
fail() { echo "check-cross.sh: $*" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# replay RUNNER... : every capture through the binary RUNNER runs, into $tmp/$tag.
replay() {
	for c in "chapcrack__sample.dump 192.168.1.0/24" "pptpcrack__test.pcap 192.168.43.39"; do
		pcap=${c% *}
		inside=${c#* }
		"$@" replay --in "testdata/pcaps/$pcap" --inside "$inside" --public-ip 198.51.100.1 \
			--out "$tmp/$tag.$pcap.out" --lan-out "$tmp/$tag.$pcap.lan" >"$tmp/$tag.$pcap.txt"
		"$@" replay --json --in "testdata/pcaps/$pcap" --inside "$inside" --public-ip 198.51.100.1 \
			--out "$tmp/$tag.$pcap.out2" >"$tmp/$tag.$pcap.json"
	done
}

tag=amd64
replay "$dist/pptpgw-$version-linux-amd64"
for t in arm64:aarch64:required mipsle:mipsel:required armv7:arm:optional mips:mips:optional; do
	arch=${t%%:*}
	rest=${t#*:}
	qemu=qemu-${rest%%:*}-static
	bin=$dist/pptpgw-$version-linux-$arch
	if ! command -v "$qemu" >/dev/null; then
		[ "${rest#*:}" = optional ] && { echo "check-cross.sh: $arch skipped ($qemu not installed)"; continue; }
		fail "$qemu not found: apt-get install qemu-user-static"
	fi
	[ -f "$bin" ] || fail "no $bin"
	got=$("$qemu" "$bin" version)
	[ "$got" = "pptpgw $version" ] || fail "$arch: pptpgw version printed '$got', want 'pptpgw $version'"
	tag=$arch
	replay "$qemu" "$bin"
	for f in "$tmp"/amd64.*; do
		cmp -s "$f" "$tmp/$arch.${f#"$tmp"/amd64.}" || fail "$arch: ${f#"$tmp"/amd64.} differs from amd64's"
	done
	echo "check-cross.sh: $arch under $qemu: version and replay as on amd64"
done
