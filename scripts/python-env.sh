#!/usr/bin/env bash
# Creates target/pyvenv with redis-py, used by the interoperability tests as the Python peer.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=target/pyvenv
REDIS_PY=5.2.1
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import redis" 2>/dev/null; then
  exit 0
fi
echo "==> creating $VENV with redis-py $REDIS_PY"
mkdir -p target
if ! python3 -m venv "$VENV" 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "redis==$REDIS_PY"
