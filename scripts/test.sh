#!/usr/bin/env bash
# Runs the whole test suite. Installs what the tests need when it is missing:
# redis-server/redis-cli/redis-benchmark, PostgreSQL (Debian packages) and a Python venv with
# redis-py for the interoperability tests. Every test starts its own throwaway servers.
set -euo pipefail
cd "$(dirname "$0")/.."

need_redis=0
for tool in redis-server redis-cli redis-benchmark redis-sentinel openssl; do
  command -v "$tool" >/dev/null 2>&1 || need_redis=1
done
if [ "$need_redis" = 1 ]; then
  echo "==> installing redis-server, redis-tools, redis-sentinel and openssl"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server redis-tools redis-sentinel openssl >/dev/null
fi
# A packaged redis-server may have been started as a service; the tests never use it.

# PostgreSQL's server programs (initdb, pg_ctl, postgres) live in /usr/lib/postgresql/N/bin.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  echo "==> installing postgresql"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
# The package may start a cluster of its own as a service; the tests never use it.

scripts/python-env.sh

# Cargo's build directory: `target/` unless CARGO_TARGET_DIR says otherwise.
TARGET_DIR="${CARGO_TARGET_DIR:-target}"

if [ "${CI:-}" = true ]; then
  # On a fresh CI machine the compile-fail cases go first, and trybuild's scratch build of the
  # whole dependency tree (about 2 GB) is removed before the other test binaries are built.
  echo "==> cargo test --test derive_ui (compile-fail cases), then its scratch build removed"
  cargo test --test derive_ui "$@"
  rm -rf "$TARGET_DIR/tests/trybuild"
  echo "==> cargo test --workspace (derive_ui ran above)"
  cargo test --workspace "$@" -- --skip derive_ui
  # The feature runs below build test binaries of their own; the workspace's are done with.
  find "$TARGET_DIR/debug/deps" -maxdepth 1 -type f -perm -u+x ! -name '*.*' -delete
else
  echo "==> cargo test --workspace"
  cargo test --workspace "$@"
fi
echo "==> cargo test -p eventbus --features schema --test schema (JSON Schemas, AsyncAPI with schemas)"
cargo test -p eventbus --features schema --test schema "$@"
echo "==> cargo test --features otel --test otel (OpenTelemetry traces through two services, the example)"
cargo test --features otel --test otel "$@"
echo "==> cargo test --features tls --test redis_tls (rediss:// against a TLS redis-server)"
cargo test --features tls --test redis_tls "$@"
echo "==> cargo test --features tls --test scale_tls (rediss+cluster:// and rediss+sentinel:// against TLS deployments)"
cargo test --features tls --test scale_tls "$@"
