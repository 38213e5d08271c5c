#!/usr/bin/env bash
# run.sh - `make bench`: qrelayd side by side with nginx on loopback.
#
# Both servers run with 2 workers and both log every request (qrelayd
# through its logger process into SQLite, nginx to an access_log file),
# serve the same 1 KB static file and a /healthz JSON answer. The servers
# are pinned to CPU 0 and the load clients to CPU 1 (taskset), so the
# machine's two cores are split between server and client; the two
# server workers therefore share one core.
#
# For each target and server it runs wrk (requests/s) and our own
# loadgen (requests/s and per-request p50/p99 timed with CLOCK_MONOTONIC,
# since wrk's latency histogram is unreliable here), ROUNDS interleaved
# rounds, and reports medians. Then memory: RSS and PSS of idle workers,
# and the RSS added by IDLE idle keep-alive connections.
#
# Environment: ROUNDS (5), DURATION (5 s), CONNS (64), IDLE (10000),
# QRELAYD (src/qrelayd), NGINX (/usr/sbin/nginx), KEEP=1 keeps the temp dir.
set -u

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
IDLE=${IDLE:-10000}
QRELAYD=${QRELAYD:-$top/src/qrelayd}
NGINX=${NGINX:-/usr/sbin/nginx}
cmdline="$0${*:+ $*} (ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS IDLE=$IDLE)"

die() { echo "bench: $*" >&2; exit 1; }
for t in wrk gcc curl "$NGINX" "$QRELAYD" python3; do
	command -v "$t" >/dev/null 2>&1 || die "missing $t"
done

tmp=$(mktemp -d /tmp/qrelay-bench.XXXXXX) || die "mktemp failed"
# nginx workers run as nobody: they must be able to read the root.
chmod 755 "$tmp"
qpid= npid= idlepid=

cleanup() {
	local p
	[ -n "$idlepid" ] && kill "$idlepid" 2>/dev/null
	if [ -n "$qpid" ]; then
		kill -TERM "$qpid" 2>/dev/null
	fi
	if [ -n "$npid" ]; then
		kill -QUIT "$npid" 2>/dev/null
	fi
	for p in $qpid $npid; do
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.2
		done
		kill -KILL "$p" 2>/dev/null
	done
	wait 2>/dev/null
	if [ "${KEEP:-0}" = 1 ]; then
		echo "bench: kept $tmp"
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Pinning: only when there are at least two CPUs to split.
ncpu=$(nproc)
if command -v taskset >/dev/null 2>&1 && [ "$ncpu" -ge 2 ]; then
	srv="taskset -c 0"; cli="taskset -c 1"
	pinning="servers on CPU 0, load clients on CPU 1 (taskset)"
else
	srv=""; cli=""
	pinning="none (taskset missing or 1 CPU)"
fi

CFLAGS_BENCH="-std=gnu11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter"
gcc $CFLAGS_BENCH -o "$tmp/loadgen" "$here/loadgen.c" || die "loadgen build"
gcc $CFLAGS_BENCH -o "$tmp/idleconns" "$here/idleconns.c" ||
	die "idleconns build"

freeport() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
qport=$(freeport); nport=$(freeport)
while [ "$nport" = "$qport" ]; do nport=$(freeport); done

# Same content for both servers: a 1 KB index.html.
mkdir -p "$tmp/www" "$tmp/q" "$tmp/n"
python3 -c 'import sys; sys.stdout.write(("<!doctype html><title>bench</title><p>" + "x" * 1024)[:1023] + "\n")' \
	> "$tmp/www/index.html"
chmod -R a+rX "$tmp/www"
FILE=/index.html
fsize=$(stat -c %s "$tmp/www$FILE")

cat > "$tmp/q/qrelayd.conf" <<EOF
listen = ["127.0.0.1:$qport"];
workers = 2;
pid_file = "$tmp/q/qrelayd.pid";
database = { path = "$tmp/q/qrelay.db"; };
www_dir = "$tmp/www";
limits = { max_connections = 20000; keepalive_timeout = 300; header_timeout = 300; };
EOF

# keepalive_requests is raised from nginx's default of 1000 because
# qrelayd has no such cap; otherwise nginx would pay reconnects.
cat > "$tmp/n/nginx.conf" <<EOF
worker_processes 2;
worker_rlimit_nofile 20000;
pid $tmp/n/nginx.pid;
error_log $tmp/n/error.log;
events { worker_connections 20000; }
http {
	include /etc/nginx/mime.types;
	default_type application/octet-stream;
	access_log $tmp/n/access.log;
	sendfile on;
	tcp_nodelay on;
	keepalive_timeout 300;
	keepalive_requests 100000000;
	server {
		listen 127.0.0.1:$nport;
		root $tmp/www;
		location = /healthz {
			default_type application/json;
			return 200 '{"status":"ok"}';
		}
	}
}
EOF

waitport() { # waitport PORT
	for _ in $(seq 1 100); do
		if curl -fs -o /dev/null "http://127.0.0.1:$1/healthz"; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

echo "bench: starting qrelayd on :$qport and nginx on :$nport ($pinning)"
QRELAYD_ADMIN_PASSWORD=benchpass123 $srv "$QRELAYD" -d -f "$tmp/q/qrelayd.conf" \
	2> "$tmp/q/qrelayd.log" &
qpid=$!
$srv "$NGINX" -e "$tmp/n/error.log" -p "$tmp/n" -c "$tmp/n/nginx.conf" \
	-g 'daemon off;' 2> "$tmp/n/stderr.log" &
npid=$!
waitport "$qport" || { cat "$tmp/q/qrelayd.log" >&2; die "qrelayd did not start"; }
waitport "$nport" || { cat "$tmp/n/error.log" >&2; die "nginx did not start"; }
grep -q ready "$tmp/q/qrelayd.log" || die "qrelayd: no 'ready' in its log"
for p in "$qport" "$nport"; do
	got=$(curl -fs "http://127.0.0.1:$p$FILE" | wc -c)
	[ "$got" = "$fsize" ] || die "port $p serves $got bytes of $FILE, not $fsize"
done

qworkers() { pgrep -P "$qpid" -f '^qrelayd: worker' | tr '\n' ' '; }
qall() { echo "$qpid $(pgrep -P "$qpid" | tr '\n' ' ')"; }
nworkers() { pgrep -P "$npid" -f 'nginx: worker' | tr '\n' ' '; }
nall() { echo "$npid $(nworkers)"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
pss_kb() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
sum_rss() { local s=0 p; for p in "$@"; do s=$((s + $(rss_kb "$p"))); done; echo $s; }
sum_pss() { local s=0 p; for p in "$@"; do s=$((s + $(pss_kb "$p"))); done; echo $s; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
field() { sed -n "s/.*$1=\\([0-9.]*\\).*/\\1/p"; }

load_before=$(cut -d" " -f1-3 /proc/loadavg)
sleep 1
# Memory, idle and fresh: no request yet but the start-up checks.
idle_fresh=""
for w in $(qworkers); do
	idle_fresh="$idle_fresh $(mb "$(rss_kb "$w")")/$(mb "$(pss_kb "$w")")"
done
nidle_fresh=""
for w in $(nworkers); do
	nidle_fresh="$nidle_fresh $(mb "$(rss_kb "$w")")/$(mb "$(pss_kb "$w")")"
done

# --- Throughput and latency -------------------------------------------
WRK="wrk -t1 -c$CONNS -d${DURATION}s"
LG="loadgen -c $CONNS -d $DURATION -w 1"
res="$tmp/results"; : > "$res"
echo "bench: $ROUNDS interleaved rounds x 2 targets x 2 servers x (wrk, loadgen), ${DURATION}s each"
for target in /healthz "$FILE"; do
	for srvname in qrelayd nginx; do # warm-up, not recorded
		p=$qport; [ $srvname = nginx ] && p=$nport
		$cli wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$p$target" > /dev/null
	done
	for r in $(seq 1 "$ROUNDS"); do
		for srvname in qrelayd nginx; do
			p=$qport; [ $srvname = nginx ] && p=$nport
			out=$($cli wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$p$target")
			rps=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
			bad=$(echo "$out" | awk '/Non-2xx|Socket errors/' | tr -s ' ' | tr '\n' ';')
			echo "$target $srvname wrk $r rps=${rps:-0} ${bad:+ERR[$bad]}" | tee -a "$res"
			out=$($cli "$tmp/loadgen" -P "$p" -c "$CONNS" -d "$DURATION" -w 1 -p "$target")
			echo "$target $srvname loadgen $r $out" | tee -a "$res"
		done
	done
done

load_after=$(cut -d" " -f1-3 /proc/loadavg)
# Is the server still whole after the load?
kill -0 "$qpid" 2>/dev/null || die "qrelayd died during the run"
nq=$(pgrep -P "$qpid" -f '^qrelayd: worker' | wc -l)
[ "$nq" = 2 ] || echo "bench: WARNING: $nq qrelayd workers after the run (expected 2)"

sleep 2
idle_after=""
for w in $(qworkers); do
	idle_after="$idle_after $(mb "$(rss_kb "$w")")/$(mb "$(pss_kb "$w")")"
done

# --- Idle keep-alive connections ---------------------------------------
idle_conns() { # idle_conns PORT PIDS...  -> "open=.. workers_rss_added_kb all_rss_added_kb pss_added_kb"
	local port=$1; shift
	local wpids=$1 allpids=$2
	local w0 a0 p0 w1 a1 p1 line
	w0=$(sum_rss $wpids); a0=$(sum_rss $allpids); p0=$(sum_pss $allpids)
	mkfifo "$tmp/hold.$port"
	$cli "$tmp/idleconns" -P "$port" -n "$IDLE" < "$tmp/hold.$port" > "$tmp/idle.$port.out" &
	idlepid=$!
	exec 9> "$tmp/hold.$port"	# holds the fifo open; closing it releases
	for _ in $(seq 1 300); do
		[ -s "$tmp/idle.$port.out" ] && break
		sleep 0.1
	done
	sleep 1	# let the servers finish their bookkeeping
	line=$(cat "$tmp/idle.$port.out")
	w1=$(sum_rss $wpids); a1=$(sum_rss $allpids); p1=$(sum_pss $allpids)
	exec 9>&-
	wait "$idlepid" 2>/dev/null; idlepid=
	echo "${line:-open=0 failed=?} $((w1 - w0)) $((a1 - a0)) $((p1 - p0)) $w1"
}
echo "bench: opening $IDLE idle keep-alive connections to each server"
qidle=$(idle_conns "$qport" "$(qworkers)" "$(qall)")
sleep 1
nidle=$(idle_conns "$nport" "$(nworkers)" "$(nall)")

# Logger health: rows in SQLite vs requests, and drops if the log says so.
sleep 2
# Records the workers could not put into the full log pipe (admin API).
dropped=$(python3 - "$qport" <<'PYEOF' 2>/dev/null || echo "?"
import json, sys, urllib.request
base = "http://127.0.0.1:%s" % sys.argv[1]
req = urllib.request.Request(base + "/v2/auth/login", method="POST",
    data=json.dumps({"password": "benchpass123"}).encode(),
    headers={"Content-Type": "application/json"})
tok = json.load(urllib.request.urlopen(req, timeout=5))["token"]
req = urllib.request.Request(base + "/v2/status",
    headers={"Authorization": "Bearer " + tok})
st = json.load(urllib.request.urlopen(req, timeout=5))
def find(o):
    if isinstance(o, dict):
        for k, v in o.items():
            if k == "logDropped":
                return v
            r = find(v)
            if r is not None:
                return r
    return None
print(find(st))
PYEOF
)
rows=$(sqlite3 "$tmp/q/qrelay.db" 'select count(*) from request_logs' 2>/dev/null || echo "?")
nlines=$(wc -l < "$tmp/n/access.log")

# --- Summary -----------------------------------------------------------
med() { # med TARGET SERVER TOOL FIELD
	awk -v t="$1" -v s="$2" -v k="$3" '$1 == t && $2 == s && $3 == k' "$res" |
		field "$4" | median
}
range() { awk -v t="$1" -v s="$2" '$1 == t && $2 == s && $3 == "loadgen"' "$res" | field rps |
	sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%d-%d", lo, hi }'; }
errs() { awk -v t="$1" -v s="$2" '$1 == t && $2 == s' "$res" |
	awk '{ n = 0; if (match($0, /errors=[0-9]+/)) n = substr($0, RSTART + 7, RLENGTH - 7); e += n; if ($0 ~ /ERR\[/) w++ } END { printf "%d%s", e, w ? " (+wrk errors in " w " runs)" : "" }'; }

echo
echo "================ qrelayd vs nginx, $(date -u '+%Y-%m-%d %H:%M UTC') ================"
echo "command:  $cmdline"
echo "machine:  nproc=$ncpu; $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo); kernel $(uname -r); $(gcc --version | head -1)"
echo "versions: $($NGINX -v 2>&1 | sed 's/^nginx version: //'); $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')"
echo "pinning:  $pinning; 2 workers each"
echo "loadavg:  $load_before before, $load_after after the throughput runs (anything else running skews the numbers)"
echo "logging:  both log every request (qrelayd: pipe -> logger -> SQLite; nginx: access_log file)"
echo "load:     $WRK http://127.0.0.1:PORT/TARGET  and  $LG -p TARGET"
echo "          $ROUNDS rounds interleaved qrelayd/nginx; medians shown; file $FILE = $fsize bytes"
echo
printf "%-12s %-8s %9s %9s %8s %8s %15s %7s\n" target server wrk_rps lg_rps p50_us p99_us "lg_rps min-max" errors
for target in /healthz "$FILE"; do
	for s in qrelayd nginx; do
		printf "%-12s %-8s %9.0f %9.0f %8.0f %8.0f %15s %7s\n" "$target" "$s" \
			"$(med "$target" $s wrk rps)" "$(med "$target" $s loadgen rps)" \
			"$(med "$target" $s loadgen p50_us)" "$(med "$target" $s loadgen p99_us)" \
			"$(range "$target" $s)" "$(errs "$target" $s)"
	done
	awk -v a="$(med "$target" qrelayd wrk rps)" -v b="$(med "$target" nginx wrk rps)" \
	    -v c="$(med "$target" qrelayd loadgen rps)" -v d="$(med "$target" nginx loadgen rps)" \
	    -v t="$target" 'BEGIN {
		r1 = b > 0 ? a / b : 0; r2 = d > 0 ? c / d : 0
		printf "%-12s ratio qrelayd/nginx: wrk %.2f, loadgen %.2f  (target >= 0.70: %s)\n",
		    t, r1, r2, (r1 >= 0.7 && r2 >= 0.7) ? "PASS" : "FAIL" }'
done
echo
echo "memory (RSS/PSS MB per worker):"
echo "  qrelayd idle, fresh:      $idle_fresh   (target < 8 MB RSS)"
echo "  qrelayd idle, after load: $idle_after"
echo "  nginx   idle, fresh:      $nidle_fresh"
set -- $qidle
printf "  qrelayd + %d idle keep-alive conns (%s %s): workers RSS +%s MB, all processes RSS +%s MB, PSS +%s MB (target < 64 MB)\n" \
	"$IDLE" "$1" "$2" "$(mb "$3")" "$(mb "$4")" "$(mb "$5")"
q_added=$4
set -- $nidle
printf "  nginx   + %d idle keep-alive conns (%s %s): workers RSS +%s MB, all processes RSS +%s MB, PSS +%s MB\n" \
	"$IDLE" "$1" "$2" "$(mb "$3")" "$(mb "$4")" "$(mb "$5")"
awk -v k="$q_added" 'BEGIN { printf "  qrelayd idle-connection memory: %s (%.0f bytes/conn)\n", k < 65536 ? "PASS" : "FAIL", k * 1024 / '"$IDLE"' }'
echo "request log: qrelayd request_logs rows=$rows, records dropped (pipe full)=$dropped; nginx access.log lines=$nlines"
echo "raw results: one line per run above (wrk rps, loadgen rps/p50/p99/errors)"
