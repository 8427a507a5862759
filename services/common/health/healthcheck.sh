#!/bin/bash
# The health check of every image (Docker's HEALTHCHECK, the chart's exec probes): GET /healthz
# on the tier's internal metrics port. Exit 0 when it answers 200, 1 otherwise; the answer's
# body (the JSON health report) goes to stdout, where Docker keeps it in State.Health.Log.
#
# Bash and its /dev/tcp rather than a node script: the check runs every 5 s in every
# container, and each run is a process started beside the service. Starting node cost about
# 38 ms of CPU per check on top of the exec itself; bash about 2 ms (bench/history.md), and
# those bursts lined up with the chain's slowest requests.
#
# Reads only METRICS_HOST and METRICS_PORT, as the service does, so it needs none of the
# service's secrets. Gives up after 3 s, before the probes' 4 s timeout would kill it.
set -u

port=${METRICS_PORT:-9464}
host=${METRICS_HOST:-127.0.0.1}
# A wildcard listener is reached on loopback.
case $host in 0.0.0.0 | :: | '') host=127.0.0.1 ;; esac
wait_seconds=3

# The group keeps bash's own "connect: Connection refused" off the output; exec's fd 3 stays.
if ! { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null; then
  echo "health probe failed: cannot connect to $host:$port"
  exit 1
fi
# HTTP/1.0: the server closes after the answer and sends the body unchunked.
printf 'GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n' "$host" >&3

if ! IFS= read -r -t "$wait_seconds" status <&3; then
  echo 'health probe timed out'
  exit 1
fi
# "HTTP/1.1 200 OK\r" → 200
code=${status#* }
code=${code%% *}
# Headers end at the first empty line (a lone \r).
while IFS= read -r -t "$wait_seconds" line <&3; do
  [ "$line" = $'\r' ] && break
done
body=''
while IFS= read -r -t "$wait_seconds" line <&3 || [ -n "$line" ]; do
  body+=$line
  line=''
done
echo "$body"
[ "$code" = 200 ]
