#!/usr/bin/env bash
# Totem next to the real Corosync, same machine, same namespaces, same workload program.
#
#   sudo bash benches/compare-corosync.sh            # full run (RUNS=3, about 30 min on 2 cores)
#   sudo QUICK=1 bash benches/compare-corosync.sh    # a few minutes: RUNS=1, 3 sizes
#   bash benches/compare-corosync.sh report          # re-print the table from $WORK/raw.jsonl
#   bash benches/compare-corosync.sh teardown        # remove a leftover setup
#   sudo bash benches/compare-corosync.sh profile    # perf profile of totemd under load
#
# Installs Corosync and its client libraries (Debian packages), builds totemd, totemctl and
# cpgbench (with the `corosync` feature), makes 3 network namespaces on a bridge
# (10.214.0.1-3), and alternates the back ends: per round, a Totem cluster, then a
# Corosync cluster with sched_rr yes, then with sched_rr no, each started fresh and
# measured with the same cpgbench workload. Prints one table of medians with the ratio
# Totem / Corosync (against Corosync's better sched_rr setting for each figure).
# Crypto is on in both: Totem's default (AES-SIV, aes256), Corosync knet aes256 + sha256.
# Cleans up only what it started (its own namespaces, the daemons it started by pid).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
	RUNS=${RUNS:-1}; DUR=${DUR:-3}; SIZES=${SIZES:-64 1024 16384}; LAT_RATES=${LAT_RATES:-1000}
	LAT_SIZES=${LAT_SIZES:-64}; TOKENS=${TOKENS:-1000}; UDP_SIZES=${UDP_SIZES:-16384}
fi
WORK=${WORK:-/tmp/totem-compare}
RUNS=${RUNS:-3}
DUR=${DUR:-5}
# 64 B x 5^k up to 1 MiB, and the anchor's 1 KiB and 16 KiB (header included).
SIZES=${SIZES:-64 320 1600 8000 40000 200000 1048576 1024 16384}
SENDERS=${SENDERS:-1 3}
LAT_RATES=${LAT_RATES:-1000 10000}
LAT_SIZES=${LAT_SIZES:-64 1024}
LAT_SECS=${LAT_SECS:-5}
TOKENS=${TOKENS:-default 1000}
SCHEDS=${SCHEDS:-yes no}
BACKENDS=${BACKENDS:-totem corosync}
PHASES=${PHASES:-tput lat fail udp}
UDP_SIZES=${UDP_SIZES:-64 1024 16384}
PROFILE_SECS=${PROFILE_SECS:-10}
FOREIGN_MAX=${FOREIGN_MAX:-20}
QUIET_MAX=${QUIET_MAX:-20}
QUIET_PCT=${QUIET_PCT:-15}
SKIP_INSTALL=${SKIP_INSTALL:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
NS=${NS:-tcmp}
NET=${NET:-10.214.0}
# extra lines for the totem section of Totem's configuration (one per line), for
# experiments: TOTEM_EXTRA=$'window_size: 100\nmax_messages: 34'. Empty in a comparison.
TOTEM_EXTRA=${TOTEM_EXTRA:-}
# DELIVERIES_LOG=1: every latency run's workers log each delivery (sender, seq, sent and
# delivered ns) to $WORK/deliveries/<backend>[-rr_<sched>]-<size>-<rate>-<time>/n<node>.txt, to
# see when the late ones came and whether every receiver saw them at once.
DELIVERIES_LOG=${DELIVERIES_LOG:-0}
# a command totemd runs under, for experiments (TOTEMD_WRAP='chrt -r 50'). Empty in a comparison.
TOTEMD_WRAP=${TOTEMD_WRAP:-}

RAW=$WORK/raw.jsonl
LOG=$WORK/log
PIDS_FILE=$WORK/pids
TGT=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TGT/release

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

# ---------------------------------------------------------------- install --
install_pkgs() {
	[ "$SKIP_INSTALL" = 1 ] && return 0
	log "installing packages (apt-get)"
	export DEBIAN_FRONTEND=noninteractive
	local made_policy=0
	# never let the package start a system-wide corosync service
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		made_policy=1
	fi
	apt-get update -q >"$LOG/apt.txt" 2>&1 || die "apt-get update failed"
	apt-get install -y -q --no-install-recommends \
		corosync libcpg-dev libcfg-dev libcmap-dev libquorum-dev libvotequorum-dev \
		libcorosync-common-dev libqb-dev gcc libc6-dev iproute2 util-linux procps \
		>>"$LOG/apt.txt" 2>&1 || die "apt-get install failed (see $LOG/apt.txt)"
	[ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
	return 0
}

build() {
	[ "$SKIP_BUILD" = 1 ] && return 0
	log "building totemd, totemctl and cpgbench (release, --features corosync)"
	(cd "$ROOT" && cargo build -j 2 --release -p node --bin totemd --bin totemctl &&
		cargo build -j 2 --release -p totem-bench --features corosync --bin cpgbench) \
		>"$LOG/build.txt" 2>&1 || die "build failed (see $LOG/build.txt)"
}

# ------------------------------------------------------------ namespaces --
alive() { [ -e "/proc/$1" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null; }
track() { echo "$1" >>"$PIDS_FILE"; }

# libqb shm files a SIGKILLed corosync leaves behind (named by its pid)
shm_cleanup() {
	local p=$1
	[ -n "$p" ] || return 0
	alive "$p" && return 0
	rm -rf "/dev/shm/qb-corosync-$p-blackbox-data" "/dev/shm/qb-corosync-$p-blackbox-header" /dev/shm/qb-"$p"-* 2>/dev/null
	return 0
}

netns_down() {
	local n p
	if [ -f "$PIDS_FILE" ]; then
		while read -r p; do
			[ -n "$p" ] && alive "$p" && kill -KILL "$p" 2>/dev/null
			shm_cleanup "$p"
		done <"$PIDS_FILE"
		: >"$PIDS_FILE"
	fi
	for n in ${NS}_n1 ${NS}_n2 ${NS}_n3 ${NS}_hub; do
		if ip netns list 2>/dev/null | grep -qw "$n"; then
			# only this script creates these namespaces: what runs inside is ours
			for p in $(ip netns pids "$n" 2>/dev/null); do
				log "killing leftover pid $p in netns $n"
				kill -KILL "$p" 2>/dev/null
				shm_cleanup "$p"
			done
			ip netns del "$n"
		fi
	done
}

netns_up() {
	netns_down
	ip netns add ${NS}_hub || die "ip netns add failed"
	ip -n ${NS}_hub link set lo up
	ip -n ${NS}_hub link add br0 type bridge
	ip -n ${NS}_hub link set br0 up
	local i
	for i in 1 2 3; do
		ip netns add ${NS}_n$i
		ip -n ${NS}_n$i link set lo up
		ip link add veth$i netns ${NS}_n$i type veth peer name h$i netns ${NS}_hub ||
			die "veth creation failed"
		ip -n ${NS}_n$i addr add $NET.$i/24 dev veth$i
		ip -n ${NS}_n$i link set veth$i up
		ip -n ${NS}_hub link set h$i master br0
		ip -n ${NS}_hub link set h$i up
	done
}

# ---------------------------------------------------------------- configs --
mkkeys() {
	mkdir -p "$WORK/totem" "$WORK/corosync"
	chmod 700 "$WORK/totem" "$WORK/corosync"
	rm -f "$WORK/totem/authkey" "$WORK/corosync/authkey"
	"$BIN/totemctl" keygen -k "$WORK/totem/authkey" >>"$LOG/keygen.txt" 2>&1 || die "totemctl keygen failed"
	corosync-keygen -l -k "$WORK/corosync/authkey" >>"$LOG/keygen.txt" 2>&1 ||
		{ head -c 256 /dev/urandom >"$WORK/corosync/authkey" && chmod 400 "$WORK/corosync/authkey"; }
}

nodelist() {
	local j
	echo "nodelist {"
	for j in 1 2 3; do
		printf '    node {\n        name: n%s\n        nodeid: %s\n        ring0_addr: %s\n    }\n' $j $j "$NET.$j"
	done
	echo "}"
}

# mkconf BACKEND TOKEN SCHED: one config per node under $WORK/BACKEND/nN
mkconf() {
	local be=$1 tok=$2 rr=$3 i d
	for i in 1 2 3; do
		d=$WORK/$be/n$i
		mkdir -p "$d/run" "$d/state"
		if [ "$be" = totem ]; then
			{
				printf 'totem {\n    version: 2\n    cluster_name: tcmp\n    transport: knet\n'
				printf '    crypto_cipher: aes256\n    crypto_hash: sha256\n    keyfile: %s\n' "$WORK/totem/authkey"
				printf '    nodeid: %s\n' $i
				[ "$tok" != default ] && printf '    token: %s\n' "$tok"
				[ -n "$TOTEM_EXTRA" ] && printf '    %s\n' "$TOTEM_EXTRA"
				printf '}\nlogging {\n    to_stderr: yes\n    to_logfile: no\n    timestamp: hires\n}\n'
				printf 'system {\n    state_dir: %s\n    run_dir: %s\n}\n' "$d/state" "$d/run"
				nodelist
			} >"$d/totem.conf"
		else
			{
				printf 'totem {\n    version: 2\n    cluster_name: tcmp\n    transport: knet\n'
				printf '    crypto_cipher: aes256\n    crypto_hash: sha256\n    keyfile: %s\n' "$WORK/corosync/authkey"
				[ "$tok" != default ] && printf '    token: %s\n' "$tok"
				printf '}\nlogging {\n    to_stderr: yes\n    to_logfile: no\n    to_syslog: no\n    timestamp: hires\n}\n'
				printf 'quorum {\n    provider: corosync_votequorum\n}\n'
				printf 'system {\n    state_dir: %s\n    sched_rr: %s\n}\n' "$d/state" "$rr"
				nodelist
			} >"$d/corosync.conf"
		fi
	done
}

# DAEMON_ARGV: how node $2 of back end $1 starts (a Corosync gets a private /run for its
# pid lock; its IPC sockets are abstract, so per network namespace).
daemon_argv() {
	local be=$1 i=$2 d=$WORK/$1/n$2
	if [ "$be" = totem ]; then
		# shellcheck disable=SC2206 # TOTEMD_WRAP is words on purpose
		DAEMON_ARGV=(ip netns exec ${NS}_n$i $TOTEMD_WRAP "$BIN/totemd" -c "$d/totem.conf")
	else
		DAEMON_ARGV=(ip netns exec ${NS}_n$i unshare -m --propagation private
			sh -c "mount --bind $d/run /run && exec corosync -f -c $d/corosync.conf")
	fi
}

start_node() {
	local be=$1 i=$2
	daemon_argv "$be" "$i"
	"${DAEMON_ARGV[@]}" >>"$LOG/${be}_n$i.log" 2>&1 &
	echo $! >"$WORK/$be/n$i/pid"
	track $!
	# no job-control notice when a measurement kill -9s it
	disown $!
}

stop_node() {
	local be=$1 i=$2 p k=0
	p=$(cat "$WORK/$be/n$i/pid" 2>/dev/null) || return 0
	[ -n "$p" ] || return 0
	kill -TERM "$p" 2>/dev/null
	while alive "$p" && [ $k -lt 150 ]; do sleep 0.1; k=$((k + 1)); done
	alive "$p" && kill -KILL "$p" 2>/dev/null
	wait "$p" 2>/dev/null
	shm_cleanup "$p"
	: >"$WORK/$be/n$i/pid"
}

members_of() { # be node -> number of ring members node sees
	local be=$1 i=$2
	if [ "$be" = totem ]; then
		ip netns exec ${NS}_n$i "$BIN/totemctl" --socket "$WORK/totem/n$i/run/totem.sock" --json members 2>/dev/null |
			tr -d ' \n\t[]' | awk -F, '{print ($0=="" ? 0 : NF)}'
	else
		ip netns exec ${NS}_n$i corosync-quorumtool -s 2>/dev/null | awk '/^Nodes:/{print $2}'
	fi
}

cluster_up() { # backend token sched
	local be=$1 tok=$2 rr=$3 i k=0 ok
	mkconf "$be" "$tok" "$rr"
	for i in 1 2 3; do start_node "$be" $i; done
	while [ $k -lt 300 ]; do
		ok=1
		for i in 1 2 3; do [ "$(members_of "$be" $i)" = 3 ] || ok=0; done
		[ $ok = 1 ] && break
		sleep 0.2
		k=$((k + 1))
	done
	[ $ok = 1 ] || die "$be cluster (token $tok, sched_rr $rr) did not form a 3-node membership (logs: $LOG)"
	log "$be cluster up (token $tok$([ "$be" = corosync ] && echo ", sched_rr $rr"))"
}

cluster_down() { local i; for i in 1 2 3; do stop_node "$1" $i; done; }

cluster_args() { # backend sched -> CARGS
	local be=$1 rr=$2 i pids="" socks=""
	for i in 1 2 3; do
		pids="$pids${pids:+,}$(cat "$WORK/$be/n$i/pid")"
		socks="$socks${socks:+,}$WORK/totem/n$i/run/totem.sock"
	done
	CARGS=(--backend "$be" --variant "$([ "$be" = totem ] && echo - || echo "$rr")"
		--netns ${NS}_n1,${NS}_n2,${NS}_n3 --daemon-pids "$pids" --out "$RAW")
	[ "$be" = totem ] && CARGS+=(--sockets "$socks")
	return 0
}

# ------------------------------------------------------------ host quiet --
# The host may be shared: before each measurement wait (at most QUIET_MAX s) for a 1-s
# sample with at most QUIET_PCT % busy. Once a wait has run out, the next ones wait at
# most 2 s until the host is seen quiet again (a busy host stays busy; waiting the full
# time before every run would only stretch the run).
sys_ticks() { awk '/^cpu /{t=0; for(i=2;i<=NF;i++) t+=$i; print t-$5-$6, t}' /proc/stat; }
QUIET_LEFT=$QUIET_MAX
quiet_wait() {
	local k=0 a b pct
	while :; do
		a=$(sys_ticks); sleep 1; b=$(sys_ticks)
		pct=$(echo "$a $b" | awk '{d=$4-$2; printf "%.0f", (d>0 ? ($3-$1)/d*100 : 0)}')
		if [ "$pct" -le "$QUIET_PCT" ]; then QUIET_LEFT=$QUIET_MAX; return 0; fi
		k=$((k + 1))
		if [ $k -ge "$QUIET_LEFT" ]; then
			[ "$QUIET_LEFT" = "$QUIET_MAX" ] && log "host still ${pct}% busy after ${k}s (other work on the machine); measuring anyway"
			QUIET_LEFT=2
			return 1
		fi
	done
}

# measure CMD...: wait for a quiet host, run a cpgbench measurement; a run that other work
# disturbed (clean=false in its record) after a quiet start is repeated, at most twice.
measure() {
	local a out quiet
	for a in 1 2 3; do
		quiet=1
		quiet_wait || quiet=0
		out=$("$BIN/cpgbench" "$@" 2>>"$LOG/cpgbench.txt") || { log "measurement failed: $* (see $LOG/cpgbench.txt)"; return 1; }
		case "$out" in *'"clean":false'*) ;; *) return 0 ;; esac
		[ $quiet = 1 ] || return 0
		log "disturbed by other work, repeating: $*"
	done
	return 0
}

# ------------------------------------------------------------- the phases --
load_round() { # backend sched
	local be=$1 rr=$2 sz ns rate
	cluster_args "$be" "$rr"
	if [[ " $PHASES " == *" tput "* ]]; then
		for sz in $SIZES; do for ns in $SENDERS; do
			measure load "${CARGS[@]}" --size "$sz" --senders "$ns" --dur "$DUR" --foreign-max "$FOREIGN_MAX"
		done; done
	fi
	if [[ " $PHASES " == *" lat "* ]]; then
		for sz in $LAT_SIZES; do for rate in $LAT_RATES; do
			local dl=()
			if [ "$DELIVERIES_LOG" = 1 ]; then
				local tag=$be
				[ "$rr" = - ] || tag="$be-rr_$rr"
				dl=(--deliveries-log "$WORK/deliveries/$tag-${sz}B-$rate-$(date +%H%M%S)")
				mkdir -p "${dl[1]}"
			fi
			measure load "${CARGS[@]}" --size "$sz" --rate "$rate" --lat-secs "$LAT_SECS" --foreign-max "$FOREIGN_MAX" "${dl[@]}"
		done; done
	fi
}

fail_run() { # backend token
	local be=$1 tok=$2 p
	cluster_up "$be" "$tok" yes
	cluster_args "$be" yes
	daemon_argv "$be" 3
	"$BIN/cpgbench" fail "${CARGS[@]}" --token "$tok" --restart-log "$LOG/${be}_n3.log.restart" \
		--restart-pidfile "$WORK/$be/n3/pid" -- "${DAEMON_ARGV[@]}" 2>>"$LOG/cpgbench.txt" ||
		log "failure/join measurement failed ($be, token $tok; see $LOG/cpgbench.txt)"
	p=$(cat "$WORK/$be/n3/pid" 2>/dev/null)
	[ -n "$p" ] && track "$p"
	cat "$LOG/${be}_n3.log.restart" >>"$LOG/${be}_n3.log" 2>/dev/null
	cluster_down "$be"
}

report() {
	echo "Totem next to Corosync: $(grep -m1 '^# env' "$RAW" 2>/dev/null | cut -c7-)"
	"$BIN/cpgbench" report "$RAW"
}

# profile: where totemd's CPU goes under the 3-sender throughput load (perf, sampling
# at PERF_HZ, default 999, with call graphs, all 3 daemons), for each of PROFILE_SIZES.
# The default call graphs follow frame pointers, which release Rust code mostly lacks:
# PERF_HZ=300 PERF_CG='--call-graph dwarf,16384' gives callers that hold. Writes
# $WORK/profile-SIZE-flat.txt (perf report by self time) and profile-SIZE.txt (with
# children).
profile() {
	local sz pids p
	command -v perf >/dev/null || { apt-get install -y -q --no-install-recommends linux-perf >>"$LOG/apt.txt" 2>&1 || die "perf not available (apt-get install linux-perf)"; }
	netns_up
	mkkeys
	cluster_up totem default -
	cluster_args totem -
	pids=$(for i in 1 2 3; do cat "$WORK/totem/n$i/pid"; done | paste -sd,)
	for sz in ${PROFILE_SIZES:-64 16384}; do
		"$BIN/cpgbench" load "${CARGS[@]}" --size "$sz" --senders 3 --dur $((PROFILE_SECS + 4)) >>"$WORK/profile-runs.jsonl" 2>>"$LOG/cpgbench.txt" &
		p=$!
		sleep 2
		perf record -F ${PERF_HZ:-999} ${PERF_CG:--g} -p "$pids" -o "$WORK/perf-$sz.data" -- sleep "$PROFILE_SECS" >>"$LOG/perf.txt" 2>&1
		wait $p
		perf report -i "$WORK/perf-$sz.data" --no-children --percent-limit 0.7 --stdio -g none >"$WORK/profile-$sz-flat.txt" 2>>"$LOG/perf.txt"
		perf report -i "$WORK/perf-$sz.data" --children --percent-limit 3 --stdio -g none >"$WORK/profile-$sz.txt" 2>>"$LOG/perf.txt"
		log "profile of totemd at $sz B x 3 senders: $WORK/profile-$sz-flat.txt (self), $WORK/profile-$sz.txt (with children)"
	done
	cluster_down totem
}

cleanup() {
	local be
	for be in totem corosync; do cluster_down $be 2>/dev/null; done
	netns_down 2>/dev/null
}

main() {
	[ "${1:-}" = report ] && { report; return; }
	[ "$(id -u)" = 0 ] || die "must run as root (network namespaces)"
	mkdir -p "$WORK" "$LOG"
	[ "${1:-}" = teardown ] && { cleanup; return; }
	if [ "${1:-}" = profile ]; then
		touch "$PIDS_FILE"
		trap cleanup EXIT
		trap 'exit 130' INT TERM
		profile
		return
	fi
	touch "$PIDS_FILE"
	install_pkgs
	command -v corosync >/dev/null || die "corosync not installed"
	build
	for b in totemd totemctl cpgbench; do [ -x "$BIN/$b" ] || die "$BIN/$b missing"; done
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	[ -f "$RAW" ] && mv -f "$RAW" "$RAW.prev"
	echo "# env date=$(date -u +%Y-%m-%dT%H:%MZ) host=$(nproc)cpu,$(free -g | awk '/^Mem:/{print $2}')GiB kernel=$(uname -r)" \
		"corosync=$(dpkg-query -W -f='${Version}' corosync) libknet=$(dpkg-query -W -f='${Version}' libknet1 2>/dev/null)" \
		"totem=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null) runs=$RUNS dur=${DUR}s loadavg=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' ,)" >"$RAW"
	netns_up
	mkkeys
	log "namespaces up: ${NS}_n1..3 on a bridge in ${NS}_hub ($NET.0/24); runs=$RUNS dur=${DUR}s"
	local r be rr tok sz
	if [[ " $PHASES " == *" tput "* || " $PHASES " == *" lat "* ]]; then
		for r in $(seq 1 "$RUNS"); do
			log "round $r of $RUNS (throughput and latency)"
			for be in $BACKENDS; do
				for rr in $([ "$be" = totem ] && echo - || echo "$SCHEDS"); do
					cluster_up "$be" default "$rr"
					load_round "$be" "$rr"
					cluster_down "$be"
				done
			done
		done
	fi
	if [[ " $PHASES " == *" fail "* ]]; then
		for tok in $TOKENS; do for r in $(seq 1 "$RUNS"); do for be in $BACKENDS; do
			log "failure/join: $be, token $tok, run $r"
			fail_run "$be" "$tok"
		done; done; done
	fi
	if [[ " $PHASES " == *" udp "* ]]; then
		for r in $(seq 1 "$RUNS"); do for sz in $UDP_SIZES; do
			measure udp --netns ${NS}_n1,${NS}_n2 --to "$NET.2:5999" --size "$sz" --secs 3 --out "$RAW"
		done; done
	fi
	cleanup
	trap - EXIT
	report | tee "$WORK/table.md"
	log "records: $RAW   logs: $LOG   table: $WORK/table.md"
}

# run main unless sourced (sourcing defines the helpers for experiments)
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
