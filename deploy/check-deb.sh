#!/bin/sh
# deploy/check-deb.sh DEB VERSION: the package holds exactly what
# mkdeb.sh promises (dpkg-deb -c), its control fields are right
# (dpkg-deb -I), and its binary is static and, where the architecture is
# this machine's, prints VERSION.
set -eu
deb=${1:?usage: check-deb.sh DEB VERSION}
version=${2:?}
fail() { echo "check-deb.sh: $deb: $*" >&2; exit 1; }

contents=$(dpkg-deb -c "$deb")
for f in ./usr/bin/pptpgw ./lib/systemd/system/pptpgw.service ./etc/pptpgw/pptpgw.yaml \
	./usr/share/doc/pptpgw/copyright ./usr/share/doc/pptpgw/rules.v4; do
	line=$(printf '%s\n' "$contents" | awk -v f="$f" '$6 == f')
	[ -n "$line" ] || fail "no $f"
	case $line in *" root/root "*) ;; *) fail "$f not owned by root: $line" ;; esac
done
printf '%s\n' "$contents" | awk '$6 == "./usr/bin/pptpgw"' | grep -q '^-rwxr-xr-x' || fail "pptpgw not mode 0755"
bad=$(printf '%s\n' "$contents" | awk '$1 ~ /^d/ && $1 != "drwxr-xr-x" {print $6}')
[ -z "$bad" ] || fail "directories not mode 0755: $bad"
unexpected=$(printf '%s\n' "$contents" | awk '$1 !~ /^d/ {print $6}' | grep -v -x -e ./usr/bin/pptpgw \
	-e ./lib/systemd/system/pptpgw.service -e ./etc/pptpgw/pptpgw.yaml \
	-e ./usr/share/doc/pptpgw/copyright -e ./usr/share/doc/pptpgw/rules.v4 || true)
[ -z "$unexpected" ] || fail "unexpected files: $unexpected"

info=$(dpkg-deb -I "$deb")
arch=$(dpkg-deb -f "$deb" Architecture)
for want in "Package: pptpgw" "Depends: iptables" "Architecture: $arch" "Section: net"; do
	printf '%s\n' "$info" | grep -q "^ $want\$" || fail "control lacks '$want'"
done
dpkg-deb -f "$deb" Version | grep -q '^[0-9][^-]*$' || fail "bad Debian version $(dpkg-deb -f "$deb" Version)"
dpkg-deb -f "$deb" Description | grep -q 'pptpgw check' || fail "description"
printf '%s\n' "$info" | grep -q '^ *[0-9]* bytes, *[0-9]* lines *conffiles' || fail "no conffiles"
[ "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" = /etc/pptpgw/pptpgw.yaml ] || fail "conffiles"
grep -q 'MIT License' LICENSE || fail "LICENSE is not MIT"
[ "$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/share/doc/pptpgw/copyright)" = "$(cat LICENSE)" ] || fail "copyright is not LICENSE"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp"
if readelf -l "$tmp/usr/bin/pptpgw" | grep -q INTERP; then fail "pptpgw is dynamically linked"; fi
if [ "$arch" = "$(dpkg --print-architecture)" ]; then
	got=$("$tmp/usr/bin/pptpgw" version)
	[ "$got" = "pptpgw $version" ] || fail "pptpgw version printed '$got', want 'pptpgw $version'"
fi
echo "check-deb.sh: $deb ok"
