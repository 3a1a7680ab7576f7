#!/bin/sh
# deploy/check-deb.sh DEB VERSION: the package holds exactly what
# mkdeb.sh promises (dpkg-deb -c), its control fields are right
# (dpkg-deb -I), its man page is docs/pptpgw.8 and renders without a
# warning, and its binary is static and, where the architecture is this
# machine's, prints VERSION.
set -eu
deb=${1:?usage: check-deb.sh DEB VERSION}
version=${2:?}
fail() { echo "check-deb.sh: $deb: $*" >&2; exit 1; }

files="./usr/bin/pptpgw
./lib/systemd/system/pptpgw.service
./etc/pptpgw/pptpgw.yaml
./usr/share/doc/pptpgw/copyright
./usr/share/doc/pptpgw/rules.v4
./usr/share/man/man8/pptpgw.8.gz
./usr/share/bash-completion/completions/pptpgw
./usr/share/zsh/vendor-completions/_pptpgw"
contents=$(dpkg-deb -c "$deb")
for f in $files; do
	line=$(printf '%s\n' "$contents" | awk -v f="$f" '$6 == f')
	[ -n "$line" ] || fail "no $f"
	case $line in *" root/root "*) ;; *) fail "$f not owned by root: $line" ;; esac
done
printf '%s\n' "$contents" | awk '$6 == "./usr/bin/pptpgw"' | grep -q '^-rwxr-xr-x' || fail "pptpgw not mode 0755"
bad=$(printf '%s\n' "$contents" | awk '$1 ~ /^d/ && $1 != "drwxr-xr-x" {print $6}')
[ -z "$bad" ] || fail "directories not mode 0755: $bad"
unexpected=$(printf '%s\n' "$contents" | awk '$1 !~ /^d/ {print $6}' | grep -v -x -F "$files" || true)
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
zcat "$tmp/usr/share/man/man8/pptpgw.8.gz" | cmp -s - docs/pptpgw.8 || fail "man page is not docs/pptpgw.8"
cmp -s "$tmp/usr/share/bash-completion/completions/pptpgw" deploy/completion/pptpgw.bash || fail "bash completion"
cmp -s "$tmp/usr/share/zsh/vendor-completions/_pptpgw" deploy/completion/_pptpgw || fail "zsh completion"
if command -v groff >/dev/null; then
	warn=$(zcat "$tmp/usr/share/man/man8/pptpgw.8.gz" | groff -man -Tutf8 -ww -z 2>&1)
	[ -z "$warn" ] || fail "man page: $warn"
fi
if readelf -l "$tmp/usr/bin/pptpgw" | grep -q INTERP; then fail "pptpgw is dynamically linked"; fi
if [ "$arch" = "$(dpkg --print-architecture)" ]; then
	got=$("$tmp/usr/bin/pptpgw" version)
	[ "$got" = "pptpgw $version" ] || fail "pptpgw version printed '$got', want 'pptpgw $version'"
fi
echo "check-deb.sh: $deb ok"
