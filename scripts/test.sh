#!/usr/bin/env bash
# Runs every test of session-bridge. On a fresh Debian machine it first
# installs what the tests need (as root, with apt-get): curl (the HTTPS
# test checks the self-signed certificate with it), redis-server, which
# the integration tests start on their own random loopback ports, and
# chromium with chromium-driver, which the browser end-to-end tests drive
# (they run /usr/bin/chromium through chromedriver from PATH), and Node.js
# with npm, which fetch TypeScript (pinned) to check the script's declarations,
# and python3 with venv, into which scripts/schemathesis.sh installs
# schemathesis (pinned, from PyPI) to check a live bridge against its OpenAPI
# document.
set -euo pipefail
cd "$(dirname "$0")/.."

need_packages=()
command -v redis-server >/dev/null 2>&1 || need_packages+=(redis-server)
command -v curl >/dev/null 2>&1 || need_packages+=(curl)
if [ ! -x /usr/bin/chromium ] || ! command -v chromedriver >/dev/null 2>&1; then
  need_packages+=(chromium chromium-driver)
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  need_packages+=(nodejs npm)
fi
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
  need_packages+=(python3 python3-venv)
fi
if [ "${#need_packages[@]}" -gt 0 ]; then
  echo "installing: ${need_packages[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "run as root (or install ${need_packages[*]} yourself)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_packages[@]}"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== tsc --noEmit (static/session-bridge.d.ts against tests/ts/usage.ts)"
tools=target/tools
if [ ! -x "$tools/node_modules/.bin/tsc" ]; then
  mkdir -p "$tools"
  npm install --prefix "$tools" --no-audit --no-fund --silent typescript@5.9.3
fi
"$tools/node_modules/.bin/tsc" -p tests/ts
echo "== cargo test"
# Every test records the tokens and session IDs it sees, and keeps the logs,
# audit files and error pages the bridge produced, for the leak check below.
export SB_TEST_ARTIFACTS="$PWD/target/test-artifacts"
rm -rf "$SB_TEST_ARTIFACTS"
cargo test --all-targets --locked
echo "== leak check over everything the suite produced"
bash scripts/check-leaks.sh "$SB_TEST_ARTIFACTS"
echo "== schemathesis against a live bridge (/api/openapi.json)"
bash scripts/schemathesis.sh
echo "== fuzz every target briefly (scripts/fuzz.sh; cargo-fuzz cached in target/tools)"
bash scripts/fuzz.sh "${SB_FUZZ_SECONDS:-20}"
