#!/usr/bin/env bash
# Runs every Taplink test on a fresh machine: installs what the tests need, then the suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests need, installed only when missing: Debian's chromium (the
# player page test; its video is a committed WebM fixture, so no FFmpeg), iproute2
# (`ip netns` for the mDNS and LAN tests), avahi-daemon, avahi-utils and dbus (the hub's
# mDNS advertisement seen by avahi-browse; the test runs a private avahi-daemon and bus of
# its own, never the machine's).
has() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
need_pkgs=()
has chromium || need_pkgs+=(chromium)
has ip || need_pkgs+=(iproute2)
has avahi-daemon || need_pkgs+=(avahi-daemon)
has avahi-browse || need_pkgs+=(avahi-utils)
has dbus-daemon || need_pkgs+=(dbus)
if ((${#need_pkgs[@]})); then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}"
    # On a host with systemd, installing avahi-daemon also starts the machine's own daemon
    # on the real interfaces; the tests only need the programs, so stop what we started.
    if [[ " ${need_pkgs[*]} " == *" avahi-daemon "* ]] && command -v systemctl >/dev/null 2>&1; then
      systemctl disable --now avahi-daemon.service avahi-daemon.socket >/dev/null 2>&1 || true
    fi
  else
    echo "tests need these Debian packages: ${need_pkgs[*]} (run as root or install them)" >&2
    exit 1
  fi
fi

cargo test --workspace --locked "$@"
