#!/usr/bin/env bash
# Runs the side-by-side benchmarks (rediscache, raw go-redis, go-redis/cache,
# rueidis, rueidisaside) against one redis-server and writes
# docs/benchmarks.md: machine, versions, a summary of ratios to raw go-redis
# with the targets of issue 6, and benchstat's tables.
#
#   bench/run.sh                      # about 10-15 minutes on 2 cores
#   COUNT=1 G1_TIME=100x G1_MANY_TIME=20x G64_TIME=100x PAIRED_ROUNDS=2x OUT_MD=/tmp/b.md bench/run.sh
#                                     # a smoke run of the script
#
# The server is started here on a free loopback port, pinned to CPU 1, with
# the latency (g1) benchmarks pinned to CPU 0 (when the machine has 2 CPUs
# or more and taskset exists) and the throughput (g64) ones free to use
# every CPU, and stopped by its pid on exit. With
# REDISCACHE_BENCH_ADDR=host:port set, that server is used instead (never
# point it at a server whose data matters: the run writes keys under a
# unique "bench-" prefix and removes them at the end).
#
# Run it on an idle machine: anything else running makes the figures
# meaningless.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out_md=${OUT_MD:-$root/docs/benchmarks.md}
count=${COUNT:-6}
g1_time=${G1_TIME:-2000x}           # GetHit, Set, GetOrLoadHit at g1
g1_many_time=${G1_MANY_TIME:-300x}  # GetMany100/1000 at g1 (milliseconds per op)
g64_time=${G64_TIME:-1s}
paired_rounds=${PAIRED_ROUNDS:-15x} # BenchmarkPairedGetHit g64: rounds of 2 x 100 ms
work=$(mktemp -d "${TMPDIR:-/tmp}/rediscache-bench.XXXXXX")
raw=$work/bench.txt

server_pid=
cleanup() {
	if [[ -n $server_pid ]]; then
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	rm -rf "$work/redis"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pin_server=() pin_bench=() pinning="not pinned"
if [[ $(nproc) -ge 2 ]] && command -v taskset >/dev/null; then
	pin_server=(taskset -c 1) pin_bench=(taskset -c 0)
	pinning="redis-server pinned to CPU 1; g1 benchmarks pinned to CPU 0 (GOMAXPROCS 1), g64 benchmarks free on both CPUs (GOMAXPROCS $(nproc))"
fi

addr=${REDISCACHE_BENCH_ADDR:-}
if [[ -z $addr ]]; then
	command -v redis-server >/dev/null || { echo "run.sh: redis-server is not on PATH" >&2; exit 1; }
	mkdir -p "$work/redis"
	for attempt in 1 2 3 4 5; do
		port=$((20000 + RANDOM % 40000))
		[[ $port == 6379 ]] && continue
		ss -Htln "sport = :$port" 2>/dev/null | grep -q . && continue
		"${pin_server[@]}" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
			--dir "$work/redis" --logfile "$work/redis/redis.log" &
		server_pid=$!
		for _ in $(seq 100); do
			redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG && break
			kill -0 "$server_pid" 2>/dev/null || break
			sleep 0.05
		done
		if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then
			addr=127.0.0.1:$port
			break
		fi
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
		server_pid=
	done
	[[ -n $addr ]] || { echo "run.sh: redis-server did not start" >&2; tail -20 "$work/redis/redis.log" >&2 || true; exit 1; }
	echo "run.sh: redis-server pid $server_pid on $addr" >&2
else
	pinning="external server $addr; benchmarks ${pin_bench[*]:-not pinned}"
fi

cd "$here"
go test -c -o "$work/bench.test" .
REDISCACHE_BENCH_ADDR=$addr "$work/bench.test" -test.run '^TestVariantsAgree$' -test.count 1 >/dev/null \
	|| { echo "run.sh: TestVariantsAgree failed; not benchmarking" >&2; exit 1; }

# Latency (g1) passes go round-robin: every variant once per round, count
# rounds, so a machine that drifts over minutes (a shared host does) slows
# every variant alike instead of whichever ran during the slow minutes.
bench() { # pattern benchtime
	for ((round = 0; round < count; round++)); do
		REDISCACHE_BENCH_ADDR=$addr "${pin_bench[@]}" "$work/bench.test" -test.run '^$' \
			-test.bench "$1" -test.benchmem -test.count 1 -test.benchtime "$2" -test.timeout 30m
	done
}
# Throughput (g64) runs with the benchmark free to use every CPU, as a
# service would; pinning is for latency figures. The GOMAXPROCS suffix
# ("-2") is dropped so the names match the g1 ones.
bench_free() { # pattern benchtime
	REDISCACHE_BENCH_ADDR=$addr "$work/bench.test" -test.run '^$' \
		-test.bench "$1" -test.benchmem -test.count "$count" -test.benchtime "$2" -test.timeout 30m |
		sed -E 's/^(Benchmark[^ \t]*)-[0-9]+([ \t])/\1\2/'
}
start=$(date +%s)
echo "run.sh: benchmarks, raw output in $raw" >&2
bench '^Benchmark(GetHit|Set|GetOrLoadHit)$/.*/g1$' "$g1_time" | tee "$raw"
bench '^BenchmarkGetMany.*/.*/g1$' "$g1_many_time" | tee -a "$raw"
bench '^BenchmarkPairedGetHit$/.*/g1$' "$g1_time" | tee -a "$raw"
bench_free '^Benchmark[^P].*/.*/g64$' "$g64_time" | tee -a "$raw"
bench_free '^BenchmarkPairedGetHit$/.*/g64$' "$paired_rounds" | tee -a "$raw"
elapsed=$(($(date +%s) - start))
grep -q '^ok\|^PASS' "$raw" || { echo "run.sh: the benchmarks failed" >&2; exit 1; }

if command -v benchstat >/dev/null; then
	benchstat=(benchstat)
elif [[ -x $(go env GOPATH)/bin/benchstat ]]; then
	benchstat=("$(go env GOPATH)/bin/benchstat")
else
	benchstat=(go run golang.org/x/perf/cmd/benchstat@latest)
fi
(cd "$work" && "${benchstat[@]}" bench.txt) >"$work/benchstat.txt"
go run ./cmd/ratios "$raw" >"$work/summary.md"

cpu=$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$root" diff --quiet HEAD 2>/dev/null || rev="$rev (with uncommitted changes)"
versions=$(go list -m -f '{{.Path}} {{.Version}}' github.com/redis/go-redis/v9 github.com/go-redis/cache/v9 \
	github.com/redis/rueidis github.com/redis/rueidis/rueidisaside | sed 's/^/- /')

mkdir -p "$(dirname "$out_md")"
{
	cat <<EOF
# Benchmarks: rediscache beside raw go-redis, go-redis/cache and rueidis

Generated by \`bench/run.sh\` on $(date -u +%Y-%m-%d) from the \`bench/\` module; do
not edit by hand. Rerun it on an idle machine to reproduce.

## Machine and versions

- CPUs: $(nproc) × ${cpu:-unknown}
- Placement: $pinning
- $(go version)
- $(redis-server --version)
- rediscache: this tree, commit $rev
$versions
- Runs: \`-count $count\`; \`-benchtime\` $g1_time at g1 ($g1_many_time for GetMany), $g64_time at g64, $paired_rounds rounds for the paired g64 benchmarks; took ${elapsed}s

## What is measured

One redis-server, one run. Every library stores and reads the same
~110-byte struct, JSON-encoded with encoding/json (go-redis/cache is set to
JSON instead of its default msgpack), and every call decodes it into the
struct, so each benchmark does the same work. \`TestVariantsAgree\` checks
that every variant returns the same value for the same key. \`g1\` is one
goroutine (\`b.Loop\`: latency, allocations); \`g64\` is 64 goroutines
(\`RunParallel\`: throughput).

| variant | what it is |
|---|---|
| rediscache | \`rediscache.New\` with \`Addrs\`, default options (envelope, stats, retries, breaker) |
| rediscache-autopipeline | the same with \`AutoPipeline: true\` (GetMany is the same code as rediscache, so not repeated) |
| rediscache-localcache | the same with \`LocalCache: true\` (go-redis server-assisted client-side cache) |
| goredis | raw go-redis \`*redis.Client\` (pool 50): GET + json.Unmarshal, json.Marshal + SET, GET-else-load-and-SET, MGET |
| goredis-autopipeline | the same through go-redis's \`Client.AutoPipeline()\` |
| goredis-pipeline | GetMany only: one go-redis pipeline of GETs |
| gocache | github.com/go-redis/cache/v9 over a go-redis client, no local cache; \`Once\` for GetOrLoad; no batch read |
| gocache-local | the same with its TinyLFU local cache (keeps bytes, decodes each hit) |
| rueidis | plain rueidis client: \`Do\` GET + json, SET PX, hand-written get-or-load, \`DoMulti\` of GETs |
| rueidis-csc | rueidis \`DoCache\` / \`DoMultiCache\`: client-side cache hit (bytes) + json decode |
| rueidisaside | rueidisaside \`Get\` with a loader (client-side cached string) + json decode |

## Summary

EOF
	cat "$work/summary.md"
	cat <<EOF

## benchstat

Median and 95% confidence interval over the $count runs of each benchmark.

\`\`\`
EOF
	cat "$work/benchstat.txt"
	echo '```'
} >"$out_md"
echo "run.sh: wrote $out_md (raw output kept in $raw)" >&2
