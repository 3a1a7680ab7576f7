# shellcheck shell=dash
# (busybox ash on the router; dash is the nearest dialect shellcheck knows: local, no arrays)
# /usr/share/pptpgw/uci.sh: /etc/config/pptpgw to the YAML file `pptpgw --config` reads.
# Sourced by /etc/init.d/pptpgw after /lib/functions.sh (config_load, config_get).
#
# The option names come from PPTPGW_OPTIONS (/usr/share/pptpgw/options), generated from
# pptpgw's option table: one "UCI NAME KIND RELOAD" line per option: its UCI name (NAME with
# underscores for dashes: max_calls for max-calls), KIND bool, value or list, RELOAD reload
# (SIGHUP puts it in force) or restart. Values go to pptpgw as written, so pptpgw itself
# rejects a wrong one, naming the key. No command is forked per option: routers are slow.

PPTPGW_OPTIONS=${PPTPGW_OPTIONS:-/usr/share/pptpgw/options}

# pptpgw_quote TEXT: TEXT as a single-quoted YAML scalar.
pptpgw_quote() {
	case "$1" in
	*"'"*) printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")" ;;
	*) printf "'%s'" "$1" ;;
	esac
}

# pptpgw_bool TEXT: true or false for UCI's boolean spellings, else TEXT quoted (pptpgw will
# say what is wrong with it).
pptpgw_bool() {
	case "$1" in
	1 | on | true | yes | enabled) echo true ;;
	0 | off | false | no | disabled) echo false ;;
	*) pptpgw_quote "$1" ;;
	esac
}

# pptpgw_yaml SECTION [all|restart]: the YAML configuration from SECTION of the loaded
# config, on stdout. "restart" writes only the options SIGHUP cannot change: procd watches
# that file and restarts the daemon when it changes, and sends SIGHUP otherwise.
pptpgw_yaml() {
	local section="$1" which="${2:-all}" key name kind reload value item
	echo "# Generated from /etc/config/pptpgw by /etc/init.d/pptpgw; edit that file instead."
	while read -r key name kind reload; do
		case "$key" in '' | '#'*) continue ;; esac
		[ "$which" = restart ] && [ "$reload" = reload ] && continue
		value=
		config_get value "$section" "$key"
		[ -n "$value" ] || continue
		case "$kind" in
		bool) echo "$name: $(pptpgw_bool "$value")" ;;
		list)
			echo "$name:"
			set -f
			for item in $value; do
				echo "  - $(pptpgw_quote "$item")"
			done
			set +f
			;;
		*) echo "$name: $(pptpgw_quote "$value")" ;;
		esac
	done <"$PPTPGW_OPTIONS"
}

# pptpgw_known NAME: whether NAME is an option of the pptpgw section (a pptpgw option's UCI
# name, or the init script's own "enabled").
pptpgw_known() {
	local key rest
	[ "$1" = enabled ] && return 0
	while read -r key rest; do
		[ "$key" = "$1" ] && return 0
	done <"$PPTPGW_OPTIONS"
	return 1
}

# pptpgw_load: config_load pptpgw, collecting in PPTPGW_UNKNOWN the option names pptpgw does
# not know (a misspelt max_cals would otherwise be ignored without a word).
# shellcheck disable=SC2317 # the callbacks are called by config_load
pptpgw_load() {
	PPTPGW_UNKNOWN=
	option_cb() { pptpgw_known "$1" || PPTPGW_UNKNOWN="$PPTPGW_UNKNOWN $1"; }
	list_cb() { option_cb "$@"; }
	config_load pptpgw
	# back to functions.sh's own no-op callbacks
	option_cb() { return 0; }
	list_cb() { return 0; }
}
