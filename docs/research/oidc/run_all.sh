#!/usr/bin/env bash
# Re-runs every experiment in this folder against a fresh oidc-provider on 127.0.0.1 and stops
# everything it started. Outputs go to *.out next to the scripts.
#   NODE=/path/to/node (default: node on PATH)   PROBE=path to the built probe binary
set -euo pipefail
cd "$(dirname "$0")"
NODE="${NODE:-node}"
PROBE="${PROBE:-./target/release/oidc-probe}"
[ -d idp/node_modules/oidc-provider ] || (cd idp && npm ci --no-audit --no-fund)

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start_op() { # $1 port, $2 rp port, $3 op host
  (cd idp && OP_PORT="$1" RP_PORT="$2" OP_HOST="$3" exec "$NODE" provider.mjs) >"op-$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do grep -q READY "op-$1.log" && return 0; sleep 0.05; done
  echo "OP on $1 did not start" >&2; cat "op-$1.log" >&2; return 1
}

start_op 9400 8089 127.0.0.1
python3 flow_requests.py http://127.0.0.1:9400 alice 8089 | tee flow_requests.out
python3 sso_check.py http://127.0.0.1:9400 rotate | tee sso_check.out
python3 workload_rotation.py http://127.0.0.1:9400 | tee workload_rotation.out

start_op 9405 8091 127.0.0.1
python3 flow_selenium.py http://127.0.0.1:9405 8091 | tee flow_selenium.out

start_op 9410 8093 localhost
python3 flow_samesite_csp.py http://localhost:9410 8093 | tee flow_samesite_csp.out

if [ -x "$PROBE" ]; then
  (cd probe && NODE="$NODE" PROVIDER_JS=../idp/provider.mjs LOGIN_DRIVER=../login_driver.py "../$PROBE") | tee probe_run.out
fi
echo "run_all: done"
