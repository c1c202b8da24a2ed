#!/usr/bin/env bash
# Runs every Taplink test on a fresh machine: installs what the tests need, then the suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests need, installed only when missing: Debian's chromium (the
# player page test), iproute2 (`ip netns` for the mDNS and LAN tests).
need_pkgs=()
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
command -v ip >/dev/null 2>&1 || need_pkgs+=(iproute2)
if ((${#need_pkgs[@]})); then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}"
  else
    echo "tests need these Debian packages: ${need_pkgs[*]} (run as root or install them)" >&2
    exit 1
  fi
fi

cargo test --workspace --locked "$@"
