#!/usr/bin/env bash
# relay.sh - `make bench`, the relay: what qrelayd adds on the way to the
# upstream, measured side by side with the upstream alone in one run.
#
# The upstream is benchq (benchq.c), a fast fake in C: qrelayd's config
# points q_endpoint, oidc_endpoint and kiro_auth_endpoint at it, one idc
# account and one client key are added through the admin API, and once
# the account has its token (benchq's /token) the rounds run:
#
#  (a) non-streaming /v1/messages at RATE requests/s, open loop (loadgen
#      -r: requests go out on a fixed schedule and latency counts from
#      the scheduled time), through qrelayd and straight to benchq's
#      /generateAssistantResponse with the very upstream body qrelayd
#      sent (benchq -w saved it). Overhead = qrelayd - benchq, p50, p99.
#  (b) the same with "stream":true, timing the first body byte (-T):
#      the time to first byte qrelayd adds to a stream.
#  (c) convbench (1 MB Claude Code request -> upstream body, median ms,
#      and callgrind's instruction count per conversion) and tokbench
#      (100 KB prompt through tokens_count).
#  (e) the pool: a second qrelayd holding ACCOUNTS accounts (imported
#      through POST /v2/accounts/import) runs (a) in the same rounds as
#      the first, which holds one: the overhead must not grow by more
#      than 10%. Account selection itself is timed by poolbench (ns per
#      pick, 10,000 accounts, 1 and 8 processes, every strategy).
#  (d) STREAMS concurrent slow streams (benchq sends SLOW_FRAMES text
#      frames + metering + context, SLOW_DELAY_MS apart once all STREAMS
#      have their first frame) held by the two
#      workers (streamhold.c checks every stream arrives whole); the total
#      RSS of all qrelayd processes (master and children, /proc) is
#      sampled while they run and its peak reported.
#
# ROUNDS rounds for (a) and (b), interleaved qrelayd/benchq (the order
# alternates each round); medians over the rounds are reported. qrelayd is
# pinned to CPU 0; benchq and the load clients to CPU 1 (taskset).
#
# Environment: ROUNDS (5), DURATION (5 s per run), WARM (1 s), RATE (1000),
# CONNS (16, loadgen connections), STREAMS (10000), SLOW_FRAMES (8),
# SLOW_DELAY_MS (1000), HOLD_TIMEOUT (300 s), CALLGRIND (1), ACCOUNTS
# (10000, for e), PARTS ("a b c d e"), PIN (split: qrelayd on CPU 0, the rest on CPU 1; one:
# everything on CPU 0; none), QRELAYD (src/qrelayd), CONVBENCH (src/tests/convbench),
# TOKBENCH (src/tests/tokbench), KEEP=1 keeps the temp dir.
set -u

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
WARM=${WARM:-1}
RATE=${RATE:-1000}
CONNS=${CONNS:-16}
STREAMS=${STREAMS:-10000}
SLOW_FRAMES=${SLOW_FRAMES:-8}
SLOW_DELAY_MS=${SLOW_DELAY_MS:-1000}
HOLD_TIMEOUT=${HOLD_TIMEOUT:-300}
CALLGRIND=${CALLGRIND:-1}
PARTS=${PARTS:-a b c d e}
ACCOUNTS=${ACCOUNTS:-10000}
POOLBENCH=${POOLBENCH:-$top/src/tests/poolbench}
PIN=${PIN:-split}
QRELAYD=${QRELAYD:-$top/src/qrelayd}
CONVBENCH=${CONVBENCH:-$top/src/tests/convbench}
TOKBENCH=${TOKBENCH:-$top/src/tests/tokbench}
cmdline="$0${*:+ $*} (ROUNDS=$ROUNDS DURATION=$DURATION WARM=$WARM RATE=$RATE CONNS=$CONNS STREAMS=$STREAMS SLOW_FRAMES=$SLOW_FRAMES SLOW_DELAY_MS=$SLOW_DELAY_MS ACCOUNTS=$ACCOUNTS PARTS=\"$PARTS\" PIN=$PIN)"
PASSWORD=benchpass123
MARKER=bench-slow-stream

die() { echo "relay-bench: $*" >&2; exit 1; }
say() { echo "relay-bench: $*"; }
part() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
for t in gcc curl python3; do
	command -v "$t" >/dev/null 2>&1 || die "missing $t"
done

# What the Makefile's bench target builds; standalone runs build it here.
if [ ! -x "$QRELAYD" ] || [ ! -x "$CONVBENCH" ] || [ ! -x "$TOKBENCH" ] ||
    [ ! -x "$POOLBENCH" ]; then
	make -C "$top" --no-print-directory all src/tests/convbench \
	    src/tests/tokbench src/tests/poolbench || die "make failed"
fi

tmp=$(mktemp -d /tmp/qrelay-relaybench.XXXXXX) || die "mktemp failed"
chmod 755 "$tmp"
qpid= q2pid= bpid= holdpids=

cleanup() {
	local p
	for p in $holdpids; do kill "$p" 2>/dev/null; done
	for p in $qpid $q2pid $bpid; do kill -TERM "$p" 2>/dev/null; done
	for p in $qpid $q2pid $bpid; do
		for _ in $(seq 1 25); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.2
		done
		kill -KILL "$p" 2>/dev/null
	done
	wait 2>/dev/null
	if [ "${KEEP:-0}" = 1 ]; then
		echo "relay-bench: kept $tmp"
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ncpu=$(nproc)
if ! command -v taskset >/dev/null 2>&1 || [ "$ncpu" -lt 2 ] || [ "$PIN" = none ]; then
	srv=""; cli=""
	pinning="none"
elif [ "$PIN" = one ]; then
	srv="taskset -c 0"; cli="taskset -c 0"
	pinning="everything on CPU 0 (PIN=one: no wake-up crosses CPUs)"
else
	srv="taskset -c 0"; cli="taskset -c 1"
	pinning="qrelayd on CPU 0 (its 2 workers share it); benchq and the load clients on CPU 1 (taskset)"
fi

# Ten thousand streams: a connection from the client and one to benchq
# per stream, in whichever worker took it. The machine caps open files
# per process; take the hard limit and size qrelayd's per-worker
# connection cap so a worker never needs more descriptors than that.
ulimit -n "$(ulimit -Hn)" 2>/dev/null
nofile=$(ulimit -n)
[ "$nofile" = unlimited ] && nofile=1048576
maxconn=$(( (nofile - 256) / 2 ))
[ "$maxconn" -gt 1000000 ] && maxconn=1000000
if part d && [ $((2 * maxconn)) -lt "$STREAMS" ]; then
	say "WARNING: open files limit $nofile: 2 workers can hold only $((2 * maxconn)) streams"
fi

CFLAGS_BENCH="-std=gnu11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter"
gcc $CFLAGS_BENCH -o "$tmp/loadgen" "$here/loadgen.c" || die "loadgen build"
gcc $CFLAGS_BENCH -o "$tmp/benchq" "$here/benchq.c" -lz || die "benchq build"
gcc $CFLAGS_BENCH -o "$tmp/streamhold" "$here/streamhold.c" ||
	die "streamhold build"

freeport() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
jget() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# --- benchq and qrelayd ------------------------------------------------
mkdir -p "$tmp/q"
# -G: the slow streams of (d) start their clocks once all are open, so
# they are all held at once however long qrelayd takes to open them.
$cli "$tmp/benchq" -f "$tmp/benchq.port" -n "$SLOW_FRAMES" -D "$SLOW_DELAY_MS" \
	-S "$MARKER" -G "$STREAMS" -w "$tmp/upstream-body.json" 2> "$tmp/benchq.log" &
bpid=$!
for _ in $(seq 1 50); do
	[ -s "$tmp/benchq.port" ] && break
	sleep 0.1
done
[ -s "$tmp/benchq.port" ] || die "benchq did not start"
bport=$(cat "$tmp/benchq.port")
up="http://127.0.0.1:$bport"
qport=$(freeport)
while [ "$qport" = "$bport" ]; do qport=$(freeport); done

cat > "$tmp/q/qrelayd.conf" <<EOF
listen = ["127.0.0.1:$qport"];
workers = 2;
pid_file = "$tmp/q/qrelayd.pid";
database = { path = "$tmp/q/qrelay.db"; };
www_dir = "$top/www";
upstream = { q_endpoint = "$up"; oidc_endpoint = "$up"; kiro_auth_endpoint = "$up"; };
limits = { max_connections = $maxconn; keepalive_timeout = 300; header_timeout = 300; };
EOF

say "starting benchq on :$bport and qrelayd on :$qport ($pinning)"
QRELAYD_ADMIN_PASSWORD=$PASSWORD $srv "$QRELAYD" -d -f "$tmp/q/qrelayd.conf" \
	2> "$tmp/q/qrelayd.log" &
qpid=$!
ok=0
for _ in $(seq 1 100); do
	if curl -fs -o /dev/null "http://127.0.0.1:$qport/healthz"; then
		ok=1; break
	fi
	sleep 0.1
done
[ $ok = 1 ] || { cat "$tmp/q/qrelayd.log" >&2; die "qrelayd did not start"; }

base="http://127.0.0.1:$qport"
tok=$(curl -fs -X POST -H 'Content-Type: application/json' \
	-d "{\"password\":\"$PASSWORD\"}" "$base/v2/auth/login" | jget token) ||
	die "admin login failed"
curl -fs -o /dev/null -X POST -H "Authorization: Bearer $tok" \
	-H 'Content-Type: application/json' \
	-d '{"type":"idc","label":"bench","refreshToken":"bench-refresh-token","clientId":"bench-client-id","clientSecret":"bench-client-secret","region":"us-east-1"}' \
	"$base/v2/accounts" || die "POST /v2/accounts failed"
key=$(curl -fs -X POST -H "Authorization: Bearer $tok" \
	-H 'Content-Type: application/json' -d '{"name":"bench"}' \
	"$base/v2/keys" | jget key) || die "POST /v2/keys failed"

model=claude-sonnet-4-5-20250929
printf '{"model":"%s","max_tokens":1024,"messages":[{"role":"user","content":"Say hello in one short sentence."}]}' \
	"$model" > "$tmp/msg.json"
printf '{"model":"%s","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"Say hello in one short sentence."}]}' \
	"$model" > "$tmp/msg-stream.json"
printf '{"model":"%s","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"%s: say hello, slowly."}]}' \
	"$model" "$MARKER" > "$tmp/msg-slow.json"
QH=(-H "Authorization: Bearer $key" -H "anthropic-version: 2023-06-01"
    -H "Content-Type: application/json")
UH=(-H "Authorization: Bearer bench-at" -H "Content-Type: application/json")

# The account has a token once a request goes through.
ok=0
for _ in $(seq 1 150); do
	st=$(curl -s -o "$tmp/first.json" -w '%{http_code}' -X POST "${QH[@]}" \
		--data-binary @"$tmp/msg.json" "$base/v1/messages")
	[ "$st" = 200 ] && { ok=1; break; }
	sleep 0.2
done
[ $ok = 1 ] || { cat "$tmp/first.json" "$tmp/q/qrelayd.log" >&2; die "no 200 from /v1/messages in 30 s (last $st)"; }
[ -s "$tmp/upstream-body.json" ] || die "benchq saved no upstream body"
python3 - "$tmp/first.json" "$SLOW_FRAMES" <<'PYEOF' || die "the non-streaming answer is wrong"
import json, sys
j = json.load(open(sys.argv[1]))
want = "".join("Frame %d of the benchq answer. " % i for i in range(int(sys.argv[2])))
got = "".join(c.get("text", "") for c in j["content"])
assert got == want and j["stop_reason"] == "end_turn", (got, j)
PYEOF
curl -fs -N -X POST "${QH[@]}" --data-binary @"$tmp/msg-stream.json" \
	"$base/v1/messages" > "$tmp/first-stream.txt" || die "stream request failed"
grep -q '^event: message_stop' "$tmp/first-stream.txt" ||
	die "the stream has no message_stop"
say "account ready; upstream body $(wc -c < "$tmp/upstream-body.json") bytes saved for the direct runs"

# --- the second qrelayd of (e), with ACCOUNTS accounts ------------------
if part e; then
	q2port=$(freeport)
	while [ "$q2port" = "$bport" ] || [ "$q2port" = "$qport" ]; do q2port=$(freeport); done
	mkdir -p "$tmp/q2"
	cat > "$tmp/q2/qrelayd.conf" <<EOF
listen = ["127.0.0.1:$q2port"];
workers = 2;
max_accounts = $((ACCOUNTS + 16));
pid_file = "$tmp/q2/qrelayd.pid";
database = { path = "$tmp/q2/qrelay.db"; };
www_dir = "$top/www";
upstream = { q_endpoint = "$up"; oidc_endpoint = "$up"; kiro_auth_endpoint = "$up"; };
refresher = { usage_interval = 0; };
limits = { max_connections = $maxconn; keepalive_timeout = 300; header_timeout = 300; };
EOF
	say "(e) starting a second qrelayd on :$q2port with $ACCOUNTS accounts"
	QRELAYD_ADMIN_PASSWORD=$PASSWORD $srv "$QRELAYD" -d -f "$tmp/q2/qrelayd.conf" \
		2> "$tmp/q2/qrelayd.log" &
	q2pid=$!
	ok=0
	for _ in $(seq 1 100); do
		curl -fs -o /dev/null "http://127.0.0.1:$q2port/healthz" && { ok=1; break; }
		sleep 0.1
	done
	[ $ok = 1 ] || { cat "$tmp/q2/qrelayd.log" >&2; die "the second qrelayd did not start"; }
	base2="http://127.0.0.1:$q2port"
	tok2=$(curl -fs -X POST -H 'Content-Type: application/json' \
		-d "{\"password\":\"$PASSWORD\"}" "$base2/v2/auth/login" | jget token) ||
		die "admin login (second qrelayd) failed"
	# Kiro IDE credential objects with a live token: benchq takes
	# "bench-at" from any account, and none needs renewing
	python3 - "$ACCOUNTS" > "$tmp/accounts.json" <<'PYEOF'
import json, sys
print(json.dumps([{"authMethod": "social", "provider": "Google",
    "refreshToken": "bench-rt-%d" % i, "accessToken": "bench-at",
    "expiresAt": "2099-01-01T00:00:00Z", "region": "us-east-1"}
    for i in range(int(sys.argv[1]))]))
PYEOF
	added=$(curl -fs -X POST -H "Authorization: Bearer $tok2" \
		-H 'Content-Type: application/json' --data-binary @"$tmp/accounts.json" \
		"$base2/v2/accounts/import" | jget added) || die "import into the second qrelayd failed"
	[ "$added" = "$ACCOUNTS" ] || die "imported $added of $ACCOUNTS accounts"
	key2=$(curl -fs -X POST -H "Authorization: Bearer $tok2" \
		-H 'Content-Type: application/json' -d '{"name":"bench"}' \
		"$base2/v2/keys" | jget key) || die "POST /v2/keys (second qrelayd) failed"
	QH2=(-H "Authorization: Bearer $key2" -H "anthropic-version: 2023-06-01"
	    -H "Content-Type: application/json")
	ok=0
	for _ in $(seq 1 150); do
		st=$(curl -s -o /dev/null -w '%{http_code}' -X POST "${QH2[@]}" \
			--data-binary @"$tmp/msg.json" "$base2/v1/messages")
		[ "$st" = 200 ] && { ok=1; break; }
		sleep 0.2
	done
	[ $ok = 1 ] || { cat "$tmp/q2/qrelayd.log" >&2; die "no 200 from the second qrelayd (last $st)"; }
fi

qall() { echo "$qpid $(pgrep -P "$qpid" | tr '\n' ' ')"; }
q2all() { echo "$q2pid $(pgrep -P "$q2pid" | tr '\n' ' ')"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
pss_kb() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
sum_rss() { local s=0 p; for p in "$@"; do s=$((s + $(rss_kb "$p"))); done; echo $s; }
sum_pss() { local s=0 p; for p in "$@"; do s=$((s + $(pss_kb "$p"))); done; echo $s; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
field() { sed -n "s/.*[ ^]$1=\\([0-9.]*\\).*/\\1/p; s/^$1=\\([0-9.]*\\).*/\\1/p"; }

clk_tck=$(getconf CLK_TCK)
load_before=$(cut -d" " -f1-3 /proc/loadavg)
res="$tmp/results"; : > "$res"

# --- (a) and (b): open-loop latency, side by side ----------------------
LG="loadgen -r $RATE -c $CONNS -d $DURATION -w $WARM -m POST"
lg_q() { # lg_q BODY [loadgen options]
	local b=$1; shift
	$cli "$tmp/loadgen" -P "$qport" -r "$RATE" -c "$CONNS" -d "$DURATION" \
		-w "$WARM" -m POST -p /v1/messages -b "$b" "${QH[@]}" "$@"
}
lg_b() {
	$cli "$tmp/loadgen" -P "$bport" -r "$RATE" -c "$CONNS" -d "$DURATION" \
		-w "$WARM" -m POST -p /generateAssistantResponse \
		-b "$tmp/upstream-body.json" "${UH[@]}" "$@"
}
# CPU time (utime + stime, /proc/PID/stat) and time spent runnable but
# waiting for a CPU (/proc/PID/schedstat), summed over PIDS, in us: the
# first is what a request costs the server, the second how much other
# processes on its CPU were in the way.
cpu_us() { local p; for p in "$@"; do sed 's/.*) //' "/proc/$p/stat" 2>/dev/null; done |
	awk -v hz="$clk_tck" '{ t += $12 + $13 } END { printf "%.0f", t * 1e6 / hz }'; }
wait_us() { local p; for p in "$@"; do cat "/proc/$p/schedstat" 2>/dev/null; done |
	awk '{ t += $2 } END { printf "%.0f", t / 1e3 }'; }
run_pair() { # run_pair PART ROUND BODY [-T]
	local p=$1 r=$2 b=$3 s out pids c0 w0 nreq; shift 3
	local order="qrelayd benchq"
	[ $((r % 2)) = 0 ] && order="benchq qrelayd"
	nreq=$(awk -v r="$RATE" -v d="$DURATION" -v w="$WARM" 'BEGIN { printf "%.0f", r * (d + w) }')
	for s in $order; do
		if [ $s = qrelayd ]; then pids=$(qall); else pids=$bpid; fi
		c0=$(cpu_us $pids); w0=$(wait_us $pids)
		if [ $s = qrelayd ]; then out=$(lg_q "$b" "$@"); else out=$(lg_b "$@"); fi
		out="$out cpu_us=$(( ($(cpu_us $pids) - c0) / nreq )) wait_us=$(( ($(wait_us $pids) - w0) / nreq ))"
		echo "$p $s $r $out" | tee -a "$res"
	done
}
lg_q2() {
	$cli "$tmp/loadgen" -P "$q2port" -r "$RATE" -c "$CONNS" -d "$DURATION" \
		-w "$WARM" -m POST -p /v1/messages -b "$1" "${QH2[@]}"
}
# (e): one account, ACCOUNTS accounts and benchq alone, the order rotating
run_pool() { # run_pool ROUND
	local r=$1 s out pids c0 nreq order
	case $((r % 3)) in
	0) order="q1 qN benchq" ;; 1) order="qN benchq q1" ;; *) order="benchq q1 qN" ;;
	esac
	nreq=$(awk -v r="$RATE" -v d="$DURATION" -v w="$WARM" 'BEGIN { printf "%.0f", r * (d + w) }')
	for s in $order; do
		case $s in q1) pids=$(qall) ;; qN) pids=$(q2all) ;; *) pids=$bpid ;; esac
		c0=$(cpu_us $pids)
		case $s in
		q1) out=$(lg_q "$tmp/msg.json") ;;
		qN) out=$(lg_q2 "$tmp/msg.json") ;;
		*) out=$(lg_b) ;;
		esac
		echo "e $s $r $out cpu_us=$(( ($(cpu_us $pids) - c0) / nreq ))" | tee -a "$res"
	done
}
if part a || part b; then
	say "$ROUNDS rounds x (a, b) x (qrelayd, benchq), ${DURATION}s + ${WARM}s warm-up each at $RATE req/s"
	DURATION=1 WARM=0 lg_q "$tmp/msg.json" > /dev/null	# warm-up
	DURATION=1 WARM=0 lg_b > /dev/null
	for r in $(seq 1 "$ROUNDS"); do
		part a && run_pair a "$r" "$tmp/msg.json"
		part b && run_pair b "$r" "$tmp/msg-stream.json" -T
	done
fi
pool_lines=""
if part e; then
	say "(e) $ROUNDS rounds x (1 account, $ACCOUNTS accounts, benchq) at $RATE req/s"
	DURATION=1 WARM=0 lg_q2 "$tmp/msg.json" > /dev/null	# warm-up
	for r in $(seq 1 "$ROUNDS"); do run_pool "$r"; done
	kill -0 "$q2pid" 2>/dev/null || die "the second qrelayd died"
	say "(e) poolbench"
	# not pinned: 8 processes share both CPUs, as 8 workers would
	pool_lines=$("$POOLBENCH") || die "poolbench failed"
	echo "$pool_lines" | sed 's/^/  /'
fi
load_after=$(cut -d" " -f1-3 /proc/loadavg)
kill -0 "$qpid" 2>/dev/null || die "qrelayd died during the latency runs"

# --- (c): conversion and token counting -------------------------------
conv_ms=? conv_cpu=? conv_ir=? tok_line="" tok_ms=?
if part c; then
	say "convbench and tokbench"
	conv=$($cli "$CONVBENCH" 200) || die "convbench failed"
	echo "$conv" | sed 's/^/  /'
	conv_ms=$(echo "$conv" | sed -n 's/^convert 1MB: median \([0-9.]*\) ms.*/\1/p')
	conv_cpu=$(echo "$conv" | sed -n 's/^convert 1MB, CPU time: median \([0-9.]*\) ms.*/\1/p')
	conv_req=$(echo "$conv" | sed -n 's/^request: //p')
	if [ "$CALLGRIND" = 1 ] && command -v valgrind >/dev/null 2>&1; then
		cg=$(valgrind --tool=callgrind --callgrind-out-file="$tmp/callgrind.out" \
			--toggle-collect=anthropic_parse --toggle-collect=qreq_build \
			"$CONVBENCH" 5 2>&1 >/dev/null | sed -n 's/.*Collected : *\([0-9]*\).*/\1/p')
		[ -n "$cg" ] && conv_ir=$((cg / 5))
	fi
	tok_line=$(cd "$top" && $cli "$TOKBENCH") || die "tokbench failed"
	echo "  $tok_line"
	tok_ms=$(echo "$tok_line" | sed -n 's/.*: median \([0-9.]*\) ms.*/\1/p')
fi

# --- (d): many slow streams at once -------------------------------------
hold_line="" rss_base=0 rss_peak=0 pss_peak=0 hold_rc=?
if part d; then
	per=$((nofile - 64))
	nproc_hold=$(( (STREAMS + per - 1) / per ))
	say "(d) $STREAMS concurrent slow streams ($((SLOW_FRAMES + 2)) frames ${SLOW_DELAY_MS} ms apart) over $nproc_hold client process(es)"
	sleep 1
	rss_base=$(sum_rss $(qall))
	left=$STREAMS i=0
	while [ "$left" -gt 0 ]; do
		n=$(( left < (STREAMS + nproc_hold - 1) / nproc_hold ? left : (STREAMS + nproc_hold - 1) / nproc_hold ))
		$cli "$tmp/streamhold" -P "$qport" -n "$n" -b "$tmp/msg-slow.json" \
			"${QH[@]}" -x "$SLOW_FRAMES" -t "$HOLD_TIMEOUT" \
			> "$tmp/hold.$i.out" 2> "$tmp/hold.$i.err" &
		holdpids="$holdpids $!"
		left=$((left - n)); i=$((i + 1))
	done
	while :; do
		running=0
		for p in $holdpids; do kill -0 "$p" 2>/dev/null && running=1; done
		pids=$(qall)
		r=$(sum_rss $pids)
		if [ "$r" -gt "$rss_peak" ]; then
			rss_peak=$r
			pss_peak=$(sum_pss $pids)
		fi
		[ $running = 1 ] || break
		sleep 0.25
	done
	hold_rc=0
	for p in $holdpids; do wait "$p" || hold_rc=1; done
	holdpids=
	hold_line=$(cat "$tmp"/hold.*.out | awk '
		{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] += kv[2]
		  if (kv[1] == "total_s" && kv[2] > t) t = kv[2]
		  if (kv[1] == "ramp_s" && kv[2] > rt) rt = kv[2]
		  if (kv[1] != "streams" && kv[1] != "ok" && kv[1] != "failed" && kv[1] != "peak" && kv[1] != "ramp_s" && kv[1] != "total_s") extra = extra " " $i } }
		END { printf "streams=%d ok=%d failed=%d peak_open=%d ramp_s=%.2f total_s=%.2f%s",
		    v["streams"], v["ok"], v["failed"], v["peak"], rt, t, extra }')
	echo "  $hold_line"
	cat "$tmp"/hold.*.err >&2
	kill -0 "$qpid" 2>/dev/null || die "qrelayd died during the streams"
fi
nworkers=$(pgrep -P "$qpid" -f '^qrelayd: worker' | wc -l)
sleep 1
warnings=$(grep -ciE 'warn|error|fatal' "$tmp/q/qrelayd.log")
rows=$(sqlite3 "$tmp/q/qrelay.db" "select count(*) || ' rows, ' || sum(status >= 400) || ' with status >= 400' from request_logs" 2>/dev/null || echo "?")

# --- Summary -------------------------------------------------------------
med() { # med PART SERVER FIELD
	awk -v p="$1" -v s="$2" '$1 == p && $2 == s' "$res" | field "$3" | median
}
errs() { awk -v p="$1" -v s="$2" '$1 == p && $2 == s' "$res" | field errors | awk '{ e += $1 } END { print e + 0 }'; }
pf() { awk -v ok="$1" 'BEGIN { print ok ? "PASS" : "MISS" }'; }
# per_round PART FIELD: qrelayd - benchq for each round, in round order
per_round() {
	awk -v p="$1" -v f="$2" '$1 == p {
		for (i = 4; i <= NF; i++) { split($i, kv, "="); if (kv[1] == f) v[$3, $2] = kv[2] }
		if ($3 > n) n = $3 }
	    END { for (r = 1; r <= n; r++) printf "%s%d", (r > 1 ? "," : ""), v[r, "qrelayd"] - v[r, "benchq"] }' "$res"
}
latency_block() { # latency_block PART TARGET_FIELD TARGET_US LABEL
	local p=$1 tf=$2 tus=$3 label=$4 s d50 d99 v e n
	printf "  %-9s %8s %8s %8s %9s %7s   %s\n" "" p50_us p90_us p99_us p99.9_us errors \
		"CPU us/req, us/req waiting for a CPU"
	for s in qrelayd benchq; do
		printf "  %-9s %8.0f %8.0f %8.0f %9.0f %7s   %s, %s\n" $s "$(med "$p" $s p50_us)" \
			"$(med "$p" $s p90_us)" "$(med "$p" $s p99_us)" "$(med "$p" $s p999_us)" \
			"$(errs "$p" $s)" "$(med "$p" $s cpu_us)" "$(med "$p" $s wait_us)"
	done
	d50=$(awk -v a="$(med "$p" qrelayd p50_us)" -v b="$(med "$p" benchq p50_us)" 'BEGIN { print a - b }')
	d99=$(awk -v a="$(med "$p" qrelayd p99_us)" -v b="$(med "$p" benchq p99_us)" 'BEGIN { print a - b }')
	printf "  %-9s %8.0f %8s %8.0f   (difference of the medians; per round: p50 %s; p99 %s)\n" \
		"$label" "$d50" "" "$d99" "$(per_round "$p" p50_us)" "$(per_round "$p" p99_us)"
	if [ "$tf" = p50 ]; then v=$d50; else v=$d99; fi
	e=$(errs "$p" qrelayd); n=$(awk -v p="$p" '$1 == p' "$res" | wc -l)
	printf "  target: %s added < %d us, no errors: %s\n" "$tf" "$tus" \
		"$(pf "$(awk -v v="$v" -v t="$tus" -v e="$e" -v n="$n" 'BEGIN { print (n > 0 && v < t && e == 0) }')")"
}

echo
echo "================ qrelayd relay costs, $(date -u '+%Y-%m-%d %H:%M UTC') ================"
echo "command:  $cmdline"
echo "machine:  nproc=$ncpu; $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo); kernel $(uname -r); $(gcc --version | head -1); $(curl --version | head -1 | awk '{print $1, $2}') in qrelayd"
echo "pinning:  $pinning"
echo "loadavg:  $load_before before, $load_after after the latency runs (anything else running skews the numbers)"
echo "upstream: benchq (tests/bench/benchq.c) on :PORT; answers $((SLOW_FRAMES + 2)) event-stream frames ($SLOW_FRAMES text, metering, context), at once or (d) ${SLOW_DELAY_MS} ms apart"
echo "qrelayd:  2 workers, logging every request (logger -> SQLite); max_connections = $maxconn per worker; open files $nofile"
if part a || part b; then
echo "load:     open loop, $ROUNDS rounds interleaved qrelayd/benchq, medians shown; each run:"
echo "          qrelayd: $LG -P QPORT -p /v1/messages -b BODY -H 'Authorization: Bearer KEY' -H 'anthropic-version: 2023-06-01' -H 'Content-Type: application/json' [-T]"
echo "          benchq:  $LG -P BPORT -p /generateAssistantResponse -b UPSTREAM_BODY -H 'Authorization: Bearer bench-at' -H 'Content-Type: application/json' [-T]"
echo "          BODY: $(cat "$tmp/msg.json")  (b: with \"stream\":true); UPSTREAM_BODY: the $(wc -c < "$tmp/upstream-body.json") bytes qrelayd sent upstream for it"
fi
echo
if part a; then
	echo "(a) non-streaming latency at $RATE req/s (to the last byte, us):"
	latency_block a p50 100 overhead
	echo
fi
if part b; then
	echo "(b) streaming, time to first body byte at $RATE req/s (us):"
	latency_block b p99 1000 added
	echo
fi
if part c; then
	echo "(c) conversion of a Claude-Code-sized request (anthropic_parse + qreq_build): $CONVBENCH 200"
	echo "    $conv_req"
	printf "    median %s ms (CPU time %s ms); callgrind (%s 5, --toggle-collect=anthropic_parse,qreq_build): %s instructions per conversion\n" \
		"$conv_ms" "$conv_cpu" "$CONVBENCH" "$conv_ir"
	echo "    target: < 5 ms: $(pf "$(awk -v v="$conv_ms" 'BEGIN { print (v != "?" && v + 0 < 5) }')")"
	echo "    token counting: (cd $top && $TOKBENCH)"
	echo "    $tok_line"
	echo "    target: 100 KB prompt < 5 ms: $(pf "$(awk -v v="$tok_ms" 'BEGIN { print (v != "?" && v + 0 < 5) }')")"
	echo
fi
if part e; then
	echo "(e) the pool: the same load as (a) through a qrelayd with 1 account (q1) and one with $ACCOUNTS accounts (qN), rounds interleaved with benchq alone (us):"
	printf "  %-9s %8s %8s %8s %7s   %s\n" "" p50_us p90_us p99_us errors "CPU us/req"
	for s in q1 qN benchq; do
		printf "  %-9s %8.0f %8.0f %8.0f %7s   %s\n" $s "$(med e $s p50_us)" \
			"$(med e $s p90_us)" "$(med e $s p99_us)" "$(errs e $s)" "$(med e $s cpu_us)"
	done
	o1=$(awk -v a="$(med e q1 p50_us)" -v b="$(med e benchq p50_us)" 'BEGIN { print a - b }')
	oN=$(awk -v a="$(med e qN p50_us)" -v b="$(med e benchq p50_us)" 'BEGIN { print a - b }')
	c1=$(med e q1 cpu_us); cN=$(med e qN cpu_us)
	g=$(awk -v a="$o1" -v b="$oN" 'BEGIN { if (a > 0) printf "%.1f", (b / a - 1) * 100; else print "?" }')
	gc=$(awk -v a="$c1" -v b="$cN" 'BEGIN { if (a > 0) printf "%.1f", (b / a - 1) * 100; else print "?" }')
	echo "  overhead p50: 1 account $o1 us, $ACCOUNTS accounts $oN us: growth $g% (CPU per request: $c1 -> $cN us, $gc%)"
	echo "  target: overhead grows < 10%: $(pf "$(awk -v g="$g" -v e="$(errs e qN)" 'BEGIN { print (g != "?" && g + 0 < 10 && e == 0) }')")"
	echo "  account selection: $POOLBENCH, not pinned (P processes pick + release in a loop over one shared table of 10,000 ready accounts; cooling=9990: all but 10 cooling down; sticky=1: a conversation key per pick)."
	echo "  cpu_ns_per_pick is what a pick costs, with P processes hitting the same table; ns_per_pick is wall time per pick in each process, which with 8 processes on $ncpu CPUs includes waiting for a CPU."
	echo "$pool_lines" | sed 's/^/    /'
	echo "  target: < 1000 ns of CPU per pick, every strategy, 8 processes: $(pf "$(echo "$pool_lines" | grep 'procs=8' | field cpu_ns_per_pick | awk 'BEGIN { ok = 1; n = 0 } { n++; if ($1 + 0 >= 1000) ok = 0 } END { print (n > 0 && ok) }')")"
	echo
fi
if part d; then
	echo "(d) $STREAMS concurrent slow streams, 2 workers: $(basename "$0") ran streamhold -P QPORT -n $STREAMS -b SLOW_BODY -x $SLOW_FRAMES -t $HOLD_TIMEOUT (checks every event and the text)"
	echo "    $hold_line"
	okn=$(echo "$hold_line" | field ok); failn=$(echo "$hold_line" | field failed)
	peakn=$(echo "$hold_line" | field peak_open)
	printf "    qrelayd RSS, all processes (master + %d children): %s MB before, peak %s MB (PSS at that peak %s MB)\n" \
		"$(pgrep -P "$qpid" | wc -l)" "$(mb "$rss_base")" "$(mb "$rss_peak")" "$(mb "$pss_peak")"
	awk -v k="$rss_peak" -v n="$STREAMS" -v b="$rss_base" 'BEGIN { printf "    that is %.1f KB per stream above the idle daemon\n", (k - b) / n }'
	echo "    all $STREAMS open at once: $( [ "${peakn:-0}" = "$STREAMS" ] && echo yes || echo "NO (peak ${peakn:-?})"); ramp_s is how long opening them all took (benchq held the first ones at their first frame until then)"
	echo "    target: RSS < 256 MB and every stream complete: $(pf "$(awk -v k="$rss_peak" -v o="${okn:-0}" -v f="${failn:-1}" -v n="$STREAMS" 'BEGIN { print (k < 262144 && o == n && f == 0) }')")"
	echo
fi
echo "qrelayd:  $nworkers workers at the end (expected 2); $warnings warning/error lines in its log; request_logs: $rows"
echo "raw results: one line per run above (PART SERVER ROUND loadgen output)"
