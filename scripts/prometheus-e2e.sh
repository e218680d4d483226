#!/usr/bin/env bash
# End-to-end check of the Prometheus integration, all on 127.0.0.1:
#
#   redis-server  <-  metrics example (prometheus/examples/metrics)  <-  prometheus (scrapes every 1s)
#
# It drives traffic through the example, waits until Prometheus has scraped
# all of it, and checks that the hit rate Prometheus computes from
# rediscache_requests_total equals the example's Stats().HitRate() (within
# 0.01). It also checks that Prometheus loaded alerts/rediscache.rules.yml and
# that every query of dashboards/rediscache.json evaluates without error.
#
# Needs go, redis-server, prometheus, curl and jq (Debian packages
# redis-server, prometheus, curl, jq). Every process it starts is stopped by
# its pid on exit; the run is bounded (about 10s, 60s at most after the build).
#
# Usage: bash scripts/prometheus-e2e.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

for cmd in go redis-server prometheus curl jq; do
  command -v "$cmd" >/dev/null || { echo "prometheus-e2e: $cmd is not installed" >&2; exit 1; }
done

tmp=$(mktemp -d)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  echo "prometheus-e2e: FAIL: $*" >&2
  for log in "$tmp"/*.log; do
    [ -f "$log" ] || continue
    echo "--- $(basename "$log") (last 20 lines)" >&2
    tail -n 20 "$log" >&2
  done
  exit 1
}

start=$SECONDS
budget=60
over_budget() { [ $((SECONDS - start)) -ge "$budget" ]; }

# wait_until DESCRIPTION TIMEOUT_S COMMAND...: polls COMMAND every 0.2s.
wait_until() {
  local what=$1 limit=$(($2 * 5))
  shift 2
  for _ in $(seq "$limit"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    over_budget && break
    sleep 0.2
  done
  fail "timed out waiting for $what"
}

# free_port: a loopback port nothing listens on (never 6379), not handed out before.
used_ports=" 6379 "
free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 40000))
    [[ $used_ports == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      used_ports+="$p "
      echo "$p"
      return 0
    fi
  done
  fail "no free port"
}

redis_ping() {
  local reply
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'PING\r\n' >&3
  read -r -t 1 reply <&3 || { exec 3>&-; return 1; }
  exec 3>&-
  [[ $reply == +PONG* ]]
}

# prom_query EXPR: the instant query's JSON.
prom_query() {
  curl -sS --max-time 5 "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1"
}

# prom_value EXPR: the single value of an instant query, or empty.
prom_value() {
  prom_query "$1" | jq -r 'if .status == "success" and (.data.result | length) == 1 then .data.result[0].value[1] else empty end'
}

echo "== build the example"
build_start=$SECONDS
(cd prometheus && go build -o "$tmp/metrics-example" ./examples/metrics)
start=$SECONDS # the budget covers the run, not a cold build
echo "   built in $((SECONDS - build_start))s"

echo "== start redis-server, the example and prometheus"
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$tmp" --logfile "$tmp/redis.log" &
pids+=($!)
wait_until "redis-server on $redis_port" 10 redis_ping "$redis_port"

app_port=$(free_port)
"$tmp/metrics-example" -addr "127.0.0.1:$app_port" -redis "127.0.0.1:$redis_port" >"$tmp/example.log" 2>&1 &
pids+=($!)
app="http://127.0.0.1:$app_port"
wait_until "the example on $app_port" 15 curl -sf --max-time 2 "$app/stats"

prom_port=$(free_port)
cat >"$tmp/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $root/alerts/rediscache.rules.yml
scrape_configs:
  - job_name: rediscache-example
    static_configs:
      - targets: ['127.0.0.1:$app_port']
EOF
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
  --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$tmp/prometheus.log" 2>&1 &
pids+=($!)
wait_until "prometheus on $prom_port" 20 curl -sf --max-time 2 "http://127.0.0.1:$prom_port/-/ready"
target_up() { [ "$(prom_value 'up{job="rediscache-example"}')" = 1 ]; }
wait_until "a first scrape" 15 target_up

echo "== traffic: 300 requests over 100 ids, plus 10 for 5 unknown ids"
{
  for _ in $(seq 300); do
    echo "url = \"$app/task?id=$((RANDOM % 100))\""
    echo 'output = "/dev/null"'
  done
  for i in $(seq 0 9); do
    echo "url = \"$app/task?id=$((1000 + i % 5))\""
    echo 'output = "/dev/null"'
  done
} >"$tmp/urls.cfg"
codes=$(curl -sS --max-time 30 -K "$tmp/urls.cfg" -w '%{http_code}\n')
ok=$(grep -c '^200$' <<<"$codes" || true)
notfound=$(grep -c '^404$' <<<"$codes" || true)
[ "$ok" -eq 300 ] && [ "$notfound" -eq 10 ] || fail "responses: $ok 200s and $notfound 404s, want 300 and 10"

# No traffic is in flight now: Stats() is final.
stats=$(curl -sf --max-time 5 "$app/stats")
lookups=$(jq -r '.hits + .misses' <<<"$stats")
stats_rate=$(jq -r '.hit_rate' <<<"$stats")
echo "   Stats(): hits $(jq -r .hits <<<"$stats"), misses $(jq -r .misses <<<"$stats"), errors $(jq -r .errors <<<"$stats"), loads $(jq -r .loads <<<"$stats"), hit rate $stats_rate"

echo "== wait until prometheus has scraped all $lookups lookups"
scraped() {
  local v
  v=$(prom_value 'sum(rediscache_requests_total{job="rediscache-example",result=~"hit|miss"})')
  [ -n "$v" ] && [ "$v" = "$lookups" ]
}
wait_until "prometheus to see $lookups lookups" 20 scraped

prom_rate=$(prom_value 'sum(rediscache_requests_total{job="rediscache-example",result="hit"}) / sum(rediscache_requests_total{job="rediscache-example",result=~"hit|miss"})')
[ -n "$prom_rate" ] || fail "no hit rate from prometheus"
echo "   hit rate: prometheus $prom_rate, Stats().HitRate() $stats_rate"
awk -v a="$prom_rate" -v b="$stats_rate" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 0.01) }' ||
  fail "hit rates differ by more than 0.01: prometheus $prom_rate, Stats() $stats_rate"

# The other counters agree too.
for pair in "rediscache_loads_total:loads" "rediscache_negative_hits_total:negative_hits" "rediscache_sets_total:sets"; do
  metric=${pair%%:*} field=${pair#*:}
  got=$(prom_value "sum($metric{job=\"rediscache-example\"})")
  want=$(jq -r ".$field" <<<"$stats")
  [ "$got" = "$want" ] || fail "$metric: prometheus $got, Stats().$field $want"
done
[ "$(prom_value 'rediscache_redis_up{job="rediscache-example"}')" = 1 ] || fail "rediscache_redis_up is not 1"

echo "== alert rules loaded by prometheus"
rules=$(curl -sS --max-time 5 "http://127.0.0.1:$prom_port/api/v1/rules?type=alert")
nrules=$(jq '[.data.groups[].rules[]] | length' <<<"$rules")
bad=$(jq -r '[.data.groups[].rules[] | select(.health == "err") | .name] | join(", ")' <<<"$rules")
[ "$nrules" -eq 6 ] && [ -z "$bad" ] || fail "$nrules alert rules loaded, in error: $bad"
firing=$(jq -r '[.data.groups[].rules[] | select(.state == "firing") | .name] | join(", ")' <<<"$rules")
echo "   $nrules alert rules, none in error; firing: ${firing:-none}"

echo "== dashboard queries evaluate"
nexpr=0
while IFS= read -r expr; do
  q=${expr//\$__rate_interval/1m}
  for v in job instance client namespace; do q=${q//\$$v/.*}; done
  status=$(prom_query "$q" | jq -r '.status + " " + (.error // "")')
  [ "$status" = "success " ] || fail "dashboard query failed: $q: $status"
  nexpr=$((nexpr + 1))
done < <(jq -r '.. | objects | select(has("expr")) | .expr' dashboards/rediscache.json)
echo "   $nexpr queries OK"

over_budget && fail "took more than ${budget}s"
echo "prometheus-e2e: PASS in $((SECONDS - start))s: hit rate prometheus $prom_rate = Stats() $stats_rate over $lookups lookups"
