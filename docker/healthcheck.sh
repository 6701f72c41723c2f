#!/bin/bash
# The worker image's HEALTHCHECK: GET /healthz from the monitor, inside the container (so it works
# whether or not the monitor is published). The port is HIVEMIND_MONITOR_PORT's, default 5001;
# with the monitor turned off (port 0) there is nothing to probe and the check passes.
port="${HIVEMIND_MONITOR_PORT:-5001}"
[ "$port" != 0 ] || exit 0
{ exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || { echo "nothing answers on 127.0.0.1:$port"; exit 1; }
printf 'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$port" >&3
IFS= read -r -t 4 status <&3 || exit 1
[[ "$status" == "HTTP/1."?" 200 "* ]] || { echo "monitor answered: $status"; exit 1; }
echo ok
