#!/usr/bin/env bash
# Builds the root filesystems of the images the real nodes run, with no
# registry and no Docker: Debian's archive (debootstrap) and PyPI only.
#
#   pause  the pod sandbox: one static Go program of ours (hack/pause)
#   ray    Debian (the host's release) with bash, wget, tar, procps, a Python
#          venv at /home/ray/anaconda3 holding ray[default,serve]==$RAY_VERSION,
#          user ray (uid 1000, gid 100), as the rayproject/ray images have it,
#          and a wheelhouse (/opt/wheelhouse, from hack/wheelhouse.txt) that
#          pip in pods installs from: pods cannot reach PyPI, and KubeRay's
#          sample jobs install packages through their runtime_env; also
#          Debian's redis-server, so tests of GCS fault tolerance can run a
#          real Redis as a pod from the same image
#
# Each rootfs lands in $KUBERAY_RS_CACHE/images/<name>-<key>/rootfs, where
# <key> hashes everything that goes into it (this script, the versions, the
# pause source), so an unchanged input is never rebuilt and a changed one never
# reuses a stale tree. The Rust side (kuberay_testenv::image) packs a rootfs
# into an image archive and imports it into each node's containerd. Prints
# PAUSE_ROOTFS=... and RAY_ROOTFS=... on stdout.
#
# Needs root (debootstrap, chroot). The Debian mirror is the host's own apt
# source unless KUBERAY_DEBIAN_MIRROR is set; pip uses the host's pip settings
# (PIP_INDEX_URL, PIP_CERT or the system CA bundle).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${KUBERAY_RS_CACHE:-$HOME/.cache/kuberay-rs}"
images="$cache/images"

die() { echo "build-node-images: error: $*" >&2; exit 1; }
log() { echo "build-node-images: $*" >&2; }

[ "$(id -u)" = 0 ] || die "real nodes need root (debootstrap, chroot, containerd, kubelet); run as root."

key_of() { cat "$@" | sha256sum | cut -c1-16; }

# --- pause ------------------------------------------------------------------
pause_key="$(key_of "${BASH_SOURCE[0]}" "$here/pause/main.go" "$here/pause/go.mod" <(go env GOVERSION))"
pause_dir="$images/pause-$pause_key"
if [ ! -x "$pause_dir/rootfs/pause" ]; then
  command -v go >/dev/null 2>&1 || die "no Go toolchain on PATH; install Go 1.26+ and run again."
  log "building the pause image's program"
  tmp="$pause_dir.tmp.$$"
  rm -rf "$tmp" && mkdir -p "$tmp/rootfs"
  (cd "$here/pause" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags "-s -w" -o "$tmp/rootfs/pause" .) ||
    die "go build of hack/pause failed (see above)."
  rm -rf "$pause_dir" && mv "$tmp" "$pause_dir"
  for old in "$images"/pause-*; do
    [[ $old == "$pause_dir" || $old == *.tmp.* ]] || rm -rf "$old"
  done
fi
echo "PAUSE_ROOTFS=$pause_dir/rootfs"

# --- ray --------------------------------------------------------------------
# The host's release and mirror: debootstrap needs both, and a rootfs of the
# host's own release links against the same libraries as host-built tools.
suite="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
[ -n "$suite" ] || die "cannot tell the Debian release from /etc/os-release; this script needs a Debian host."
mirror="${KUBERAY_DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  mirror="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
    sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' | grep -v security | head -n 1)"
fi
if [ -z "$mirror" ]; then
  mirror="$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
    awk '{print $2}' | grep -v security | head -n 1)"
fi
[ -n "$mirror" ] || die "no Debian mirror found in the host's apt sources; set KUBERAY_DEBIAN_MIRROR."

ray_key="$(key_of "${BASH_SOURCE[0]}" "$here/wheelhouse.txt" <(echo "$RAY_VERSION $suite"))"
ray_dir="$images/ray-$RAY_VERSION-$ray_key"
if [ ! -x "$ray_dir/rootfs/home/ray/anaconda3/bin/ray" ]; then
  command -v debootstrap >/dev/null 2>&1 || die "debootstrap is missing; run hack/install-node-deps.sh (or apt-get install debootstrap)."
  tmp="$ray_dir.tmp"
  # A previous interrupted build may have left mounts behind.
  for m in proc dev/pts dev; do umount -l "$tmp/rootfs/$m" 2>/dev/null || true; done
  rm -rf "$tmp" && mkdir -p "$tmp"
  log "debootstrap $suite from $mirror (first time only; a few minutes)"
  if ! debootstrap --variant=minbase \
      --include=bash,ca-certificates,wget,tar,procps,python3,python3-venv,libgomp1,tini,redis-server \
      "$suite" "$tmp/rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1; then
    tail -n 20 "$tmp/debootstrap.log" >&2
    die "debootstrap failed (full log: $tmp/debootstrap.log). Check access to $mirror or set KUBERAY_DEBIAN_MIRROR."
  fi
  r="$tmp/rootfs"
  cp /etc/resolv.conf "$r/etc/resolv.conf"
  # pip in the chroot trusts what pip on the host trusts.
  ca="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"
  cp "$ca" "$r/tmp/host-ca.pem"
  grep -v '^#' "$here/wheelhouse.txt" >"$r/tmp/wheelhouse.txt"
  mount -t proc proc "$r/proc"
  trap 'umount -l "$r/proc" 2>/dev/null || true' EXIT
  log "installing ray[default,serve]==$RAY_VERSION into the image (first time only; a few minutes)"
  if ! chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
      PIP_INDEX_URL="${PIP_INDEX_URL:-}" PIP_EXTRA_INDEX_URL="${PIP_EXTRA_INDEX_URL:-}" \
      PIP_CERT=/tmp/host-ca.pem PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
      RAY_VERSION="$RAY_VERSION" /bin/bash -euo pipefail -c '
        [ -n "$PIP_INDEX_URL" ] || unset PIP_INDEX_URL
        [ -n "$PIP_EXTRA_INDEX_URL" ] || unset PIP_EXTRA_INDEX_URL
        useradd --create-home --uid 1000 --gid 100 --shell /bin/bash ray
        python3 -m venv /home/ray/anaconda3
        # protobuf 7 removed FieldDescriptor.label, which Ray Serve 2.52
        # still reads: every Serve application would end DEPLOY_FAILED.
        # Ray 2.57.1 Serve imports jinja2 (serve/_private/haproxy.py) but
        # does not declare it: without it `from ray import serve` fails and
        # the dashboard answers 501 to every Serve request.
        /home/ray/anaconda3/bin/pip install --quiet "ray[default,serve]==$RAY_VERSION" "protobuf<7" jinja2
        /home/ray/anaconda3/bin/pip wheel --quiet --wheel-dir /opt/wheelhouse -r /tmp/wheelhouse.txt
        rm -rf /tmp/pip-* /tmp/wheelhouse.txt
        chown -R 1000:100 /home/ray
      ' >"$tmp/pip.log" 2>&1; then
    tail -n 20 "$tmp/pip.log" >&2
    die "pip could not install ray[default,serve]==$RAY_VERSION in the image (full log: $tmp/pip.log)."
  fi
  umount -l "$r/proc"
  trap - EXIT
  # Login shells (kubectl exec ... bash -l) reset PATH from /etc/profile on
  # Debian; keep Ray's venv first there too.
  cat >"$r/etc/profile.d/ray.sh" <<'EOF'
export PATH=/home/ray/anaconda3/bin:$PATH
export RAY_USAGE_STATS_ENABLED=0
EOF
  # pip, also the one Ray runs for a runtime_env, installs from the
  # wheelhouse only: failing at once beats hanging on an unreachable index.
  cat >"$r/etc/pip.conf" <<'EOF'
[global]
no-index = true
find-links = /opt/wheelhouse
disable-pip-version-check = true
EOF
  rm -f "$r/tmp/host-ca.pem"
  : >"$r/etc/resolv.conf"
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/* "$r"/root/.cache
  rm -rf "$ray_dir" && mv "$tmp" "$ray_dir"
  # Older builds (other keys) are no longer used by anything.
  for old in "$images"/ray-*; do
    [[ $old == "$ray_dir" || $old == *.tmp ]] || rm -rf "$old"
  done
fi
echo "RAY_ROOTFS=$ray_dir/rootfs"
