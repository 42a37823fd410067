#!/usr/bin/env bash
# Builds the local control plane's binaries from the Go module proxy and caches
# them outside the repository, so a second run only checks that they exist.
#
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
#   kubelet, kube-proxy                                               (k8s.io/kubernetes)
#   etcd                                                              (go.etcd.io/etcd/server/v3)
#   kwok                                                              (sigs.k8s.io/kwok)
#   helm                                                              (helm.sh/helm/v3)
#   coredns, with only the plugins the real nodes use (hack/coredns)  (github.com/coredns/coredns)
#   traefik, the Gateway API implementation of the incremental-upgrade
#   end-to-end test                                                   (github.com/traefik/traefik/v3)
#
# and fetches the Gateway API standard CRDs (sigs.k8s.io/gateway-api,
# config/crd/standard), which the RayService incremental-upgrade tests
# install into the test control plane.
#
# Each lands in $KUBERAY_RS_CACHE/<component>-<version>/bin and is moved there
# only after a successful build, so an interrupted run never leaves a broken
# binary behind. Prints the directories on stdout as KEY=path lines.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${KUBERAY_RS_CACHE:-$HOME/.cache/kuberay-rs}"

die() { echo "build-control-plane: error: $*" >&2; exit 1; }
log() { echo "build-control-plane: $*" >&2; }

command -v go >/dev/null 2>&1 ||
  die "no Go toolchain on PATH. Install Go 1.26 or newer (https://go.dev/doc/install) and run again."
go_minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
[ "${go_minor:-0}" -ge 26 ] ||
  die "Go $(go env GOVERSION) is too old: Kubernetes ${K8S_VERSION} needs Go 1.26 or newer."

export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
export CGO_ENABLED=0

# new_wrapper DIR MODULE@VERSION: an empty module that requires MODULE, so its
# commands can be built with this toolchain even when MODULE's own go.mod has
# replace directives (which `go install pkg@version` refuses).
new_wrapper() {
  local dir="$1"
  rm -rf "$dir" && mkdir -p "$dir"
  (cd "$dir" && go mod init kuberay-rs.local/build >/dev/null 2>&1)
}

# go_get DIR ARGS...: `go get` with a message that names the cause on failure.
go_get() {
  local dir="$1"; shift
  if ! (cd "$dir" && go get "$@" >"$dir/get.log" 2>&1); then
    tail -n 20 "$dir/get.log" >&2
    die "downloading $* from the Go module proxy failed (see above). Check network access to the proxy (GOPROXY=$(go env GOPROXY))."
  fi
}

# build DIR OUTDIR LDFLAGS PKGS...: builds into a temporary directory, then
# moves the result into place.
build() {
  local dir="$1" out="$2" ldflags="$3"; shift 3
  local tmp="$out.tmp.$$"
  rm -rf "$tmp" && mkdir -p "$tmp"
  if ! (cd "$dir" && go build -mod=mod -trimpath -ldflags "-s -w $ldflags" -o "$tmp/" "$@" >"$dir/build.log" 2>&1); then
    tail -n 30 "$dir/build.log" >&2
    rm -rf "$tmp"
    die "go build of $* failed (see above; full log in $dir/build.log)."
  fi
  mkdir -p "$out"
  mv "$tmp"/* "$out"/
  rm -rf "$tmp"
}

have_all() { local d="$1"; shift; for b in "$@"; do [ -x "$d/$b" ] || return 1; done; }

# --- Kubernetes ----------------------------------------------------------
k8s_bin="$cache/k8s-$K8S_VERSION/bin"
if ! have_all "$k8s_bin" kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; then
  log "building Kubernetes $K8S_VERSION (first time only; about 15-25 minutes on 2 cores)"
  src="$cache/src/k8s-$K8S_VERSION"
  new_wrapper "$src"
  minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  staging_version="v0.${K8S_VERSION#v1.}"
  # Every staging module k8s.io/kubernetes replaces with a local path is
  # published on its own as v0.<minor>.<patch>; point the replaces there.
  upstream_mod="$(cd "$src" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" 2>"$src/get.log" |
    sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')" ||
    true
  [ -n "$upstream_mod" ] && [ -f "$upstream_mod" ] || {
    cat "$src/get.log" >&2
    die "could not download k8s.io/kubernetes@$K8S_VERSION from the Go module proxy."
  }
  replaces=()
  while read -r mod; do
    replaces+=("-replace=$mod=$mod@$staging_version")
  done < <(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$upstream_mod")
  (cd "$src" && go mod edit "-require=k8s.io/kubernetes@$K8S_VERSION" "${replaces[@]}")
  go_get "$src" "k8s.io/kubernetes@$K8S_VERSION"
  cmds=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
        k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
        k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
  v="k8s.io/component-base/version"
  cv="k8s.io/client-go/pkg/version"
  date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  ld=""
  for p in "$v" "$cv"; do
    ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ld+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  build "$src" "$k8s_bin" "$ld" "${cmds[@]}"
fi
echo "K8S_BIN=$k8s_bin"

# --- etcd ----------------------------------------------------------------
etcd_bin="$cache/etcd-$ETCD_VERSION/bin"
if ! have_all "$etcd_bin" etcd; then
  log "building etcd $ETCD_VERSION"
  src="$cache/src/etcd-$ETCD_VERSION"
  new_wrapper "$src"
  go_get "$src" "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  build "$src" "$etcd_bin.build" "" go.etcd.io/etcd/server/v3
  mkdir -p "$etcd_bin"
  mv "$etcd_bin.build"/* "$etcd_bin/etcd"
  rm -rf "$etcd_bin.build"
fi
echo "ETCD_BIN=$etcd_bin"

# --- KWOK ----------------------------------------------------------------
kwok_bin="$cache/kwok-$KWOK_VERSION/bin"
if ! have_all "$kwok_bin" kwok; then
  log "building kwok $KWOK_VERSION"
  src="$cache/src/kwok-$KWOK_VERSION"
  new_wrapper "$src"
  go_get "$src" "sigs.k8s.io/kwok@$KWOK_VERSION"
  build "$src" "$kwok_bin" "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok
fi
echo "KWOK_BIN=$kwok_bin"

# --- Helm ----------------------------------------------------------------
helm_bin="$cache/helm-$HELM_VERSION/bin"
if ! have_all "$helm_bin" helm; then
  log "building helm $HELM_VERSION"
  src="$cache/src/helm-$HELM_VERSION"
  new_wrapper "$src"
  go_get "$src" "helm.sh/helm/v3@$HELM_VERSION"
  build "$src" "$helm_bin" "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" helm.sh/helm/v3/cmd/helm
fi
echo "HELM_BIN=$helm_bin"

# --- CoreDNS -------------------------------------------------------------
# Our own main package (hack/coredns) links only the plugins the real nodes
# use, which builds in a fraction of the time of CoreDNS's full plugin set.
coredns_bin="$cache/coredns-$COREDNS_VERSION-$(cat "$here/coredns/main.go" | sha256sum | cut -c1-12)/bin"
if ! have_all "$coredns_bin" coredns; then
  log "building coredns $COREDNS_VERSION"
  src="$cache/src/coredns-$COREDNS_VERSION"
  new_wrapper "$src"
  cp "$here/coredns/main.go" "$src/main.go"
  go_get "$src" "github.com/coredns/coredns@$COREDNS_VERSION"
  (cd "$src" && go mod tidy >"$src/tidy.log" 2>&1) || {
    tail -n 20 "$src/tidy.log" >&2
    die "go mod tidy for coredns failed (see above)."
  }
  build "$src" "$coredns_bin.build" "" .
  mkdir -p "$coredns_bin"
  mv "$coredns_bin.build"/* "$coredns_bin/coredns"
  rm -rf "$coredns_bin.build"
fi
echo "COREDNS_BIN=$coredns_bin"

# --- Gateway API CRDs ----------------------------------------------------
# Not built: the module's config/crd/standard/*.yaml, copied out of the Go
# module cache.
gateway_crds="$cache/gateway-api-$GATEWAY_API_VERSION/crds"
if [ ! -f "$gateway_crds/gateway.networking.k8s.io_httproutes.yaml" ]; then
  log "fetching the Gateway API $GATEWAY_API_VERSION CRDs"
  src="$cache/src/gateway-api-$GATEWAY_API_VERSION"
  new_wrapper "$src"
  mod_dir="$(cd "$src" && go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" 2>"$src/get.log" |
    sed -n 's/.*"Dir": "\(.*\)".*/\1/p')" || true
  [ -n "$mod_dir" ] && [ -d "$mod_dir/config/crd/standard" ] || {
    cat "$src/get.log" >&2
    die "could not download sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION from the Go module proxy."
  }
  tmp="$gateway_crds.tmp.$$"
  rm -rf "$tmp" && mkdir -p "$tmp"
  cp "$mod_dir"/config/crd/standard/*.yaml "$tmp"/
  chmod u+w "$tmp"/*.yaml
  rm -rf "$gateway_crds" && mv "$tmp" "$gateway_crds"
fi
echo "GATEWAY_API_CRDS=$gateway_crds"

# --- Traefik (Gateway API implementation) --------------------------------
# Built inside a copy of its own module: its go.mod has replace directives
# that a wrapper module would not inherit.
traefik_bin="$cache/traefik-$TRAEFIK_VERSION/bin"
if ! have_all "$traefik_bin" traefik; then
  log "building traefik $TRAEFIK_VERSION"
  src="$cache/src/traefik-$TRAEFIK_VERSION"
  rm -rf "$src" && mkdir -p "$src"
  mod_dir="$(cd "$src" && go mod download -json "github.com/traefik/traefik/v3@$TRAEFIK_VERSION" 2>"$src/../traefik-get.log" |
    sed -n 's/.*"Dir": "\(.*\)".*/\1/p')" || true
  [ -n "$mod_dir" ] && [ -f "$mod_dir/go.mod" ] || {
    cat "$src/../traefik-get.log" >&2
    die "could not download github.com/traefik/traefik/v3@$TRAEFIK_VERSION from the Go module proxy."
  }
  cp -r "$mod_dir"/. "$src"/
  chmod -R u+w "$src"
  build "$src" "$traefik_bin" "-X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION" ./cmd/traefik
fi
echo "TRAEFIK_BIN=$traefik_bin"
