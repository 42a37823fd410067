#!/usr/bin/env bash
# One command to a working local Ray-on-Kubernetes: builds what is missing,
# starts the control plane with real nodes (pods really run Ray), installs the
# CRDs, imports the operator's image, and stays in the foreground until Ctrl-C,
# which stops everything it started. The Ready message shows the quickstart:
# install the operator chart and the ray-cluster chart, then use Ray.
#
#   hack/local-up.sh              real nodes (needs root)
#   hack/local-up.sh --simulated  simulated (KWOK) nodes and the operator as a
#                                 process: for scale work, no Ray runs
#
# Overrides (all optional):
#   KUBERAY_LOCAL_DIR            state directory (kubeconfig, logs, etcd data)
#   KUBERAY_LOCAL_NODES          number of real nodes (3)
#   KUBERAY_LOCAL_METRICS_PORT   with --simulated: operator metrics port on loopback (8080)
#   KUBERAY_LOCAL_PROBE_PORT     with --simulated: operator health port on loopback (8082)
#   KUBERAY_OPERATOR_BIN, KUBERAY_CONTROLPLANE_BIN
#                                use these binaries instead of building them
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$PWD"
export KUBERAY_RS_CACHE="${KUBERAY_RS_CACHE:-$HOME/.cache/kuberay-rs}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$KUBERAY_RS_CACHE/target}"
state="${KUBERAY_LOCAL_DIR:-$KUBERAY_RS_CACHE/local}"
metrics_port="${KUBERAY_LOCAL_METRICS_PORT:-8080}"
probe_port="${KUBERAY_LOCAL_PROBE_PORT:-8082}"
real_nodes="${KUBERAY_LOCAL_NODES:-3}"
kubeconfig="$state/kubeconfig"

say() { printf '%s\n' "$*" >&2; }
fail() {
    say "local-up: $1"
    if [[ -n ${2:-} && -f $2 ]]; then
        say "--- last lines of $2:"
        tail -n 20 "$2" >&2
    fi
    exit 1
}

simulated=false
for arg in "$@"; do
    case "$arg" in
    --simulated) simulated=true ;;
    -h | --help)
        sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) fail "unknown argument $arg (see --help)" ;;
    esac
done
if ! $simulated; then
    [[ $(id -u) == 0 ]] || fail "real nodes need root (network namespaces, cgroups, containerd); run as root, or use --simulated"
fi

bins="$(bash hack/build-control-plane.sh)"
k8s_bin="$(sed -n 's/^K8S_BIN=//p' <<<"$bins")"
helm_bin="$(sed -n 's/^HELM_BIN=//p' <<<"$bins")"
if ! $simulated; then
    bash hack/install-node-deps.sh
    say "building the node images (first time: several minutes)"
    bash hack/build-node-images.sh >/dev/null
fi
# The operator runs as a process beside simulated nodes, and from its image
# (the release build, as Dockerfile describes it) on real ones.
profile=debug
$simulated || profile=release
if [[ -z ${KUBERAY_OPERATOR_BIN:-} || -z ${KUBERAY_CONTROLPLANE_BIN:-} ]]; then
    say "building the operator ($profile) and the control-plane launcher (first time: several minutes)"
    flags=(--quiet --locked)
    [[ $profile == release ]] && flags+=(--release)
    cargo build "${flags[@]}" -p kuberay-operator --bin kuberay-operator
    cargo build --quiet --locked -p kuberay-testenv --bin kuberay-controlplane
fi
operator_bin="${KUBERAY_OPERATOR_BIN:-$CARGO_TARGET_DIR/$profile/kuberay-operator}"
controlplane_bin="${KUBERAY_CONTROLPLANE_BIN:-$CARGO_TARGET_DIR/debug/kuberay-controlplane}"
kubectl=("$k8s_bin/kubectl" --kubeconfig "$kubeconfig")

mkdir -p "$state"
rm -f "$state/ready" "$state/controlplane.ready"

# Everything started below is stopped, newest first, however this script ends:
# Ctrl-C, SIGTERM, a failed step or a component that died.
pids=()
stop() {
    trap - EXIT INT TERM
    rm -f "$state/ready"
    local i
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
    say "local environment stopped"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Waits for a condition, giving up early when the process that should make it
# true has died, so a broken component never turns into a silent hang.
await() {
    local what=$1 pid=$2 log=$3 seconds=$4
    shift 4
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        kill -0 "$pid" 2>/dev/null || fail "$what exited before it was ready" "$log"
        ((SECONDS < deadline)) || fail "$what not ready after ${seconds}s" "$log"
        sleep 0.5
    done
}

if $simulated; then
    nodes=(--nodes 3)
else
    nodes=(--nodes 0 --real-nodes "$real_nodes" --operator-image-from "$operator_bin")
fi
say "starting the control plane (state in $state)"
"$controlplane_bin" up --kubeconfig "$kubeconfig" --dir "$state/controlplane" "${nodes[@]}" \
    --ready-file "$state/controlplane.ready" >"$state/controlplane.log" 2>&1 &
pids+=($!)
# Real nodes import the images into each node once (a first run takes a
# minute or two more than later ones).
await "the control plane" "${pids[-1]}" "$state/controlplane.log" 600 \
    test -f "$state/controlplane.ready"

say "installing the ray.io CRDs"
"${kubectl[@]}" apply --server-side --force-conflicts -f config/crd/bases >/dev/null
"${kubectl[@]}" wait --for condition=Established --timeout=60s \
    crd/rayclusters.ray.io crd/rayjobs.ray.io crd/rayservices.ray.io crd/raycronjobs.ray.io >/dev/null

version="$("${kubectl[@]}" version -o json | sed -n 's/.*"gitVersion": "\(v[^"]*\)".*/\1/p' | tail -n 1)"
ray_version="$(sed -n 's/^RAY_VERSION=//p' hack/versions.env)"
if $simulated; then
    say "starting the operator"
    "$operator_bin" --kubeconfig "$kubeconfig" --enable-leader-election=false --enable-metrics \
        --metrics-addr "127.0.0.1:$metrics_port" \
        --health-probe-bind-address "127.0.0.1:$probe_port" \
        >"$state/operator.log" 2>&1 &
    pids+=($!)
    await "the operator" "${pids[-1]}" "$state/operator.log" 60 \
        curl -fs -o /dev/null "http://127.0.0.1:$probe_port/readyz"
    cat >&2 <<MSG

Ready: Kubernetes $version with simulated nodes and the Rust KubeRay operator.
Pods are scheduled and marked Running by KWOK; no Ray processes run in them.

In another shell:

  export KUBECONFIG=$kubeconfig PATH=$k8s_bin:$helm_bin:\$PATH
  kubectl get nodes
  helm install raycluster $repo/helm-chart/ray-cluster
  kubectl get rayclusters,pods,services
  curl -s http://127.0.0.1:$metrics_port/metrics | grep '^kuberay_'

Logs: $state/operator.log, $state/controlplane.log, $state/controlplane/logs/
Ctrl-C here stops everything.
MSG
else
    cat >&2 <<MSG

Ready: Kubernetes $version with $real_nodes real nodes: pods really run, with
Ray $ray_version from the locally built image rayproject/ray:$ray_version, and
the operator's image kuberay-operator:v1.7.0-rs is on every node.

In another shell:

  export KUBECONFIG=$kubeconfig PATH=$k8s_bin:$helm_bin:\$PATH
  kubectl get nodes
  helm install kuberay-operator $repo/helm-chart/kuberay-operator
  helm install raycluster $repo/helm-chart/ray-cluster
  kubectl wait --for=jsonpath='{.status.state}'=ready raycluster/raycluster-kuberay --timeout=300s
  kubectl get rayclusters,pods
  kubectl exec "\$(kubectl get pod -l ray.io/node-type=head -o name)" -c ray-head -- ray status
  kubectl port-forward svc/raycluster-kuberay-head-svc 8265:8265   # dashboard: http://127.0.0.1:8265

Pods get addresses in 198.18.0.0/15 and reach nothing outside this machine;
pip in pods installs from the image's wheelhouse (hack/wheelhouse.txt).
Logs: $state/controlplane.log, $state/controlplane/logs/ (kubelets, containerd, ...)
Ctrl-C here stops everything.
MSG
fi
# Marked ready only once the message is out: whoever waits for this file can
# rely on everything above having been printed.
touch "$state/ready"

# Returns when a process exits. They exit 0 only when signalled (Ctrl-C
# reaches the whole process group, sometimes before this shell's own trap), so
# anything else is a failure worth reporting.
set +e
wait -n "${pids[@]}"
status=$?
set -e
((status == 0 || status == 130 || status == 143)) && exit "$status"
for log in operator controlplane; do
    [[ -f $state/$log.log ]] || continue
    say "--- last lines of $state/$log.log:"
    tail -n 10 "$state/$log.log" >&2
done
fail "a component exited unexpectedly (status $status)"
