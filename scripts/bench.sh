#!/usr/bin/env bash
# Runs Taplink's benchmarks in --release: installs what they need (nginx for `manifest`,
# iproute2 for `discovery`), builds every binary (the venue benches start the real
# taplink-hub and taplink-kiosk), then runs the named benches, or all of them.
#   scripts/bench.sh                 # every bench, default sizes
#   scripts/bench.sh manifest memory # some of them
#   scripts/bench.sh blob --size-mib 64   # one, with its options (see `taplink-sim bench <name> --help`)
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || need_pkgs+=(nginx)
command -v ip >/dev/null 2>&1 || need_pkgs+=(iproute2)
if ((${#need_pkgs[@]})); then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}"
    # The benches start their own nginx; do not leave the package's service running.
    if command -v systemctl >/dev/null 2>&1; then
      systemctl disable --now nginx.service >/dev/null 2>&1 || true
    fi
  else
    echo "the benches need these Debian packages: ${need_pkgs[*]} (run as root or install them)" >&2
    exit 1
  fi
fi

cargo build --release --locked --bins
sim=target/release/taplink-sim
all=(blob reconverge warm reconnect manifest memory screen discovery flood login lists guess dashboard)
if (($# == 0)); then
  for bench in "${all[@]}"; do
    "$sim" bench "$bench"
  done
  # The manifest bench again with HTTPS on both servers (as kiosks reach a venue's hub).
  "$sim" bench manifest --tls
elif (($# >= 2)) && [[ "$2" == -* ]]; then
  "$sim" bench "$@"
else
  for bench in "$@"; do
    "$sim" bench "$bench"
  done
fi
