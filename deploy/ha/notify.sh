#!/bin/sh
# keepalived notify script of a pptpgw pair (/etc/pptpgw/ha/notify.sh):
# conntrackd's primary-backup steps, so the kernel's TCP state (the PPTP
# control connections' NAT) follows the addresses. pptpgw itself needs
# nothing here: every node already holds every call (etcd).
#
# Usage: notify.sh primary|backup|fault
# CONNTRACKD and CONNTRACKD_CONF override the binary and its config.
set -u

CONNTRACKD=${CONNTRACKD:-/usr/sbin/conntrackd}
CONNTRACKD_CONF=${CONNTRACKD_CONF:-/etc/conntrackd/conntrackd.conf}

log() {
    logger -t pptpgw-ha -- "$*" 2>/dev/null || echo "pptpgw-ha: $*" >&2
}

# step runs one conntrackd command; a failure is logged, never fatal:
# the next steps and keepalived's own transition must go on.
step() {
    if ! out=$("$CONNTRACKD" -C "$CONNTRACKD_CONF" "$@" 2>&1); then
        log "conntrackd $* failed: $out"
        return 1
    fi
    return 0
}

case "${1:-}" in
primary)
    log "becoming primary"
    # Commit the external cache (the other node's connections) into the
    # kernel. The commit runs in the background: the flush right after it
    # may be refused ("commit still in progress"), which is harmless.
    step -c
    step -f   # flush the internal and external caches
    step -R   # resynchronise the internal cache with the kernel's table
    step -B   # send a bulk update to the backup
    ;;
backup)
    log "becoming backup"
    step -n   # ask the primary for a resync of the external cache
    step -t   # shorten the kernel's timers: entries the primary owns go
    ;;
fault)
    log "fault"
    step -t
    ;;
*)
    echo "usage: $0 primary|backup|fault" >&2
    exit 2
    ;;
esac
exit 0
