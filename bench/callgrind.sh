#!/usr/bin/env bash
# Instructions per request of each load-harness configuration, counted by callgrind: the server
# (`loadtest serve`) runs under valgrind on core 0 and wrk drives it from core 1 (4 connections,
# 10 s, the read workload). Unlike req/s, the counts do not move with the machine's load.
#
#   cargo build --release -p keycard-bench
#   bench/callgrind.sh                        # every configuration
#   bench/callgrind.sh keycard-memory         # some of them
#   WORKLOAD=writes bench/callgrind.sh ...    # every other request a POST /visit (one metadata change)
#   LOADTEST=/other/target/release/loadtest bench/callgrind.sh ...   # another build
#
# Needs valgrind and wrk (Debian packages), and Redis on 127.0.0.1:6379 for the Redis configs.
# Profiles are kept in target/callgrind/<config>.out for `callgrind_annotate --inclusive=yes`.
# The count includes server start-up (a few million instructions, under 1% here).
set -euo pipefail

cd "$(dirname "$0")/.."
exe=${LOADTEST:-target/release/loadtest}
workload=${WORKLOAD:-read}
suffix=; [ "$workload" = read ] || suffix="-$workload"
out=target/callgrind
configs=("$@")
if [ ${#configs[@]} -eq 0 ]; then
    configs=(bare-axum keycard-memory keycard-redis keycard-redis-cached keycard-memory-ratelimit keycard-redis-ratelimit keycard-redis-cached-ratelimit tower-sessions-memory tower-sessions-redis)
fi
for tool in valgrind callgrind_annotate wrk curl taskset; do
    command -v "$tool" >/dev/null || { echo "callgrind.sh: $tool is missing (apt-get install valgrind wrk curl util-linux)" >&2; exit 1; }
done
[ -x "$exe" ] || { echo "callgrind.sh: build first: cargo build --release -p keycard-bench" >&2; exit 1; }
mkdir -p "$out"
addr=127.0.0.1:19402
control=127.0.0.1:19403
script=$(mktemp)
server=
trap 'rm -f "$script"; [ -n "$server" ] && kill "$server" 2>/dev/null; true' EXIT

printf '| config | requests | instructions per request |\n| --- | ---: | ---: |\n'
for config in "${configs[@]}"; do
    taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out/$config$suffix.out" \
        "$exe" serve "$config" "$addr" "$control" >/dev/null 2>&1 &
    server=$!
    ready=
    for _ in $(seq 1 120); do
        if curl -s -o /dev/null "http://$addr/"; then ready=1; break; fi
        sleep 0.5
    done
    [ -n "$ready" ] || { echo "callgrind.sh: $config did not start" >&2; exit 1; }
    case "$config" in
        tower-sessions-*)
            cookie=$(curl -s -i -X POST "http://$addr/login" | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \([^;]*\).*/\1/p')
            printf 'wrk.headers["Cookie"] = "%s"\nwrk.path = "/hello"\n' "$cookie" >"$script"
            ;;
        *)
            printf 'wrk.headers["Authorization"] = "Bearer bench-key-0001-0002-0003"\nwrk.path = "/hello"\n' >"$script"
            ;;
    esac
    if [ "$workload" = writes ]; then
        printf 'local n = 0\nrequest = function()\n  n = n + 1\n  if n %% 2 == 0 then return wrk.format("POST", "/visit") end\n  return wrk.format("GET", "/hello")\nend\n' >>"$script"
    fi
    report=$(taskset -c 1 wrk -t1 -c4 -d10s -s "$script" "http://$addr/hello")
    requests=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' <<<"$report")
    curl -s -o /dev/null -X POST "http://$control/__cleanup" || true
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=
    if [ -z "$requests" ] || [ "$requests" -eq 0 ] || grep -q "Non-2xx" <<<"$report"; then
        echo "callgrind.sh: $config did not answer every request with 2xx:" >&2
        echo "$report" >&2
        exit 1
    fi
    total=$(callgrind_annotate "$out/$config$suffix.out" 2>/dev/null | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
    printf '| %s | %s | %s |\n' "$config" "$requests" "$(( total / requests ))"
done
