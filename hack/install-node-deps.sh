#!/usr/bin/env bash
# Installs, from Debian's archive, what the real nodes run on beside the
# Go-built binaries: containerd and runc (the container runtime), the CNI
# plugins (bridge, host-local, loopback, portmap), iptables and conntrack
# (kube-proxy), and debootstrap (the Ray image's root filesystem). A second
# run only checks that they are there. Needs root and apt.
set -euo pipefail

die() { echo "install-node-deps: error: $*" >&2; exit 1; }

packages=(containerd runc containernetworking-plugins iptables conntrack debootstrap)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

[ "$(id -u)" = 0 ] || die "missing Debian packages ${missing[*]}; installing them needs root (real nodes need root anyway)."
command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get: this project's real nodes need a Debian (or Debian-based) host."
echo "install-node-deps: installing ${missing[*]} (first time only)" >&2
log="$(mktemp)"
if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  die "apt-get could not install ${missing[*]} (full log: $log)."
fi
rm -f "$log"
# The Debian package may start containerd as a service where an init system
# runs; the nodes start their own, so a system one is left alone but unused.
