#!/usr/bin/env bash
# One command to a working local Kubernetes: builds what is missing, starts
# the control plane with simulated nodes, and keeps it in the foreground until
# Ctrl-C, which stops everything.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export KUBERAY_RS_CACHE="${KUBERAY_RS_CACHE:-$HOME/.cache/kuberay-rs}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$KUBERAY_RS_CACHE/target}"
state="$KUBERAY_RS_CACHE/local"
kubeconfig="$state/kubeconfig"
mkdir -p "$state"

bins="$(bash hack/build-control-plane.sh)"
k8s_bin="$(sed -n 's/^K8S_BIN=//p' <<<"$bins")"
cargo build --quiet --locked -p kuberay-testenv --bin kuberay-controlplane

cat >&2 <<MSG
Starting the local control plane. When it is ready, in another shell:

  export KUBECONFIG=$kubeconfig PATH=$k8s_bin:\$PATH
  kubectl get nodes

Ctrl-C here stops everything.
MSG
exec "$CARGO_TARGET_DIR/debug/kuberay-controlplane" up --kubeconfig "$kubeconfig" --dir "$state/controlplane"
