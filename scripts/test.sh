#!/usr/bin/env bash
# Runs every test of session-bridge. On a fresh Debian machine it first
# installs what the tests need (as root, with apt-get): redis-server, which
# the integration tests start on their own random loopback ports, and
# chromium with chromium-driver, which the browser end-to-end tests drive
# (they run /usr/bin/chromium through chromedriver from PATH).
set -euo pipefail
cd "$(dirname "$0")/.."

need_packages=()
command -v redis-server >/dev/null 2>&1 || need_packages+=(redis-server)
if [ ! -x /usr/bin/chromium ] || ! command -v chromedriver >/dev/null 2>&1; then
  need_packages+=(chromium chromium-driver)
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
echo "== cargo test"
cargo test --all-targets --locked
