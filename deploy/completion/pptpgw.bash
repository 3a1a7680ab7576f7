# bash completion for pptpgw(8). Generated from pptpgw's option table by `go generate ./cmd/pptpgw`; do not edit.
_pptpgw() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} opts= words=
	COMPREPLY=()
	if [ "$COMP_CWORD" -eq 1 ]; then
		mapfile -t COMPREPLY < <(compgen -W "run rules calls stats events health replay check version" -- "$cur")
		return
	fi
	case ${COMP_WORDS[1]} in
	run) opts="--config --queue --queues --install-rules --repair-rules --fail-open --force --gre-path --bpf-interfaces --bpf-pin-dir --public-ip --local-gre --max-calls --max-calls-per-inside --require-auth --require-mppe --allow-inside --allow-peer --gre-idle --control-idle --setup-timeout --close-linger --restore-grace --snapshot-interval --mark-bit --admin-socket --admin-group --metrics-listen --state-file --ha-etcd --ha-node --ha-prefix --ha-etcd-ca --ha-etcd-cert --ha-etcd-key --ha-lease --log-level --log-format" words="" ;;
	rules) opts="--config --queue --queues --fail-open --bpf-pin-dir --mark-bit" words="install remove show" ;;
	calls) opts="--config --admin-socket --json --inside --peer --state" words="" ;;
	stats) opts="--config --admin-socket --json" words="" ;;
	events) opts="--config --admin-socket --json --inside --peer --type" words="" ;;
	health) opts="--config --admin-socket --json --live" words="" ;;
	replay) opts="--in --inside --json --lan-out --out --public-ip" words="" ;;
	check) opts="--config --queue --queues --fail-open --gre-path --bpf-pin-dir --mark-bit --admin-socket --json" words="" ;;
	version) opts="" words="" ;;
	*) return ;;
	esac
	case $prev in
	--config|--bpf-pin-dir|--admin-socket|--state-file|--ha-prefix|--ha-etcd-ca|--ha-etcd-cert|--ha-etcd-key|--in|--lan-out|--out)
		mapfile -t COMPREPLY < <(compgen -f -- "$cur")
		return ;;
	--queue|--queues|--public-ip|--max-calls|--max-calls-per-inside|--allow-inside|--allow-peer|--gre-idle|--control-idle|--setup-timeout|--close-linger|--restore-grace|--snapshot-interval|--mark-bit|--metrics-listen|--ha-etcd|--ha-node|--ha-lease|--inside|--peer|--state|--type)
		:
		return ;;
	--gre-path)
		mapfile -t COMPREPLY < <(compgen -W "auto bpf kernel queue" -- "$cur")
		return ;;
	--bpf-interfaces)
		mapfile -t COMPREPLY < <(compgen -W "$(ls /sys/class/net 2>/dev/null)" -- "$cur")
		return ;;
	--local-gre)
		mapfile -t COMPREPLY < <(compgen -W "drop accept" -- "$cur")
		return ;;
	--require-auth)
		mapfile -t COMPREPLY < <(compgen -W "pap chap-md5 mschapv1 mschapv2 eap" -- "$cur")
		return ;;
	--require-mppe)
		mapfile -t COMPREPLY < <(compgen -W "0 40 56 128" -- "$cur")
		return ;;
	--admin-group)
		mapfile -t COMPREPLY < <(compgen -g -- "$cur")
		return ;;
	--log-level)
		mapfile -t COMPREPLY < <(compgen -W "debug info warn error" -- "$cur")
		return ;;
	--log-format)
		mapfile -t COMPREPLY < <(compgen -W "json console" -- "$cur")
		return ;;
	esac
	if [[ $cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
	else
		mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
	fi
}
complete -F _pptpgw pptpgw
