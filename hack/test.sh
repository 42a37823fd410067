#!/usr/bin/env bash
# The whole test suite, from a fresh clone on a fresh machine: installs what is
# missing (control-plane and node binaries built from the Go module proxy,
# containerd and friends from Debian, the node images), checks formatting and
# lints, then runs every test: the fast suite and the end-to-end tests on real
# nodes (test names e2e_*; `hack/test.sh -- --skip e2e_` leaves them out).
# Needs root for the real nodes. Caches live outside the
# repository ($KUBERAY_RS_CACHE, default ~/.cache/kuberay-rs), so a second run
# only rebuilds what changed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export KUBERAY_RS_CACHE="${KUBERAY_RS_CACHE:-$HOME/.cache/kuberay-rs}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$KUBERAY_RS_CACHE/target}"

step() { printf '\n==> %s\n' "$*" >&2; }

command -v cargo >/dev/null 2>&1 ||
  { echo "test.sh: no cargo on PATH; install Rust (https://rustup.rs) and run again" >&2; exit 1; }

# KubeRay's samples and CRDs are test data the suite requires (they are
# KubeRay's, so not in this repository): say where to put them, up front.
reference="${KUBERAY_REFERENCE_DIR:-$PWD/../shared/kuberay}"
[ -d "$reference/samples" ] && [ -d "$reference/crds" ] || {
  echo "test.sh: KubeRay's reference data is missing: no samples/ and crds/ in $reference." >&2
  echo "  Put KubeRay v1.7's sample manifests and CRDs there (../shared/kuberay next to the repository)," >&2
  echo "  or set KUBERAY_REFERENCE_DIR to a directory holding samples/ and crds/." >&2
  exit 1
}

step "control-plane and node binaries (Go module proxy)"
bash hack/build-control-plane.sh >/dev/null

step "node packages (containerd, runc, CNI plugins, iptables, debootstrap)"
bash hack/install-node-deps.sh

step "node images (pause; Ray from Debian's archive and PyPI)"
bash hack/build-node-images.sh >/dev/null

step "Ray wheel (for tests against a real Ray head)"
bash hack/install-ray.sh >/dev/null

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked "$@"
