#!/usr/bin/env bash
# Builds the real Kubernetes control plane (kube-apiserver, kube-controller-manager, kube-proxy,
# kubectl), etcd (and etcdctl), Helm and Prometheus's promtool from the pinned Go modules in tools/, into a per-machine
# cache outside the checkout, and prints the directory that holds the binaries. What is already built is reused:
# the cache key is the module files' hash, so a change of pin builds anew and nothing stale is
# used.
#
#   scripts/build-tools.sh                 # the pinned versions (tools/kube/go.mod, tools/helm/go.mod)
#   KUBE_VERSION=v1.34.4 scripts/build-tools.sh   # another Kubernetes release (generated module)
#   scripts/build-tools.sh --metallb       # also MetalLB's controller and speaker (tools/metallb),
#                                          # for the side-by-side benchmark; its chart's directory
#                                          # is linked as metallb-chart
#
# The cache lives in $FERROLB_TOOLS_CACHE (default ~/.cache/ferrolb-tools). A cold build of
# everything on 2 cores takes about 20 minutes and a few GB of Go build cache; warm, nothing runs.
# Progress goes to stderr; the last line of stdout is the bin directory.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
cache=${FERROLB_TOOLS_CACHE:-$HOME/.cache/ferrolb-tools}
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

log() { echo "build-tools: $*" >&2; }

command -v go >/dev/null || { log "Go is not installed (needed to build the control plane)"; exit 1; }

# The version of a module that a tools module requires.
module_version() { (cd "$1" && go list -m -f '{{.Version}}' "$2"); }

# The module for a Kubernetes release: the committed one for the pinned version, otherwise one
# generated from that release's own go.mod (every staging module pinned to v0.Y.Z).
kube_module() {
    local want=$1
    local pinned
    pinned=$(module_version tools/kube k8s.io/kubernetes)
    if [ -z "$want" ] || [ "$want" = "$pinned" ]; then
        echo "$root/tools/kube"
        return
    fi
    local dir="$cache/modules/kube-$want"
    if [ ! -f "$dir/go.sum" ]; then
        log "generating a module for k8s.io/kubernetes $want"
        mkdir -p "$dir"
        local minor=${want#v1.}
        local staging
        staging=$(go mod download -json "k8s.io/kubernetes@$want" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
        {
            echo "module ferrolb.local/tools/kube"
            echo
            echo "go 1.24.0"
            echo
            echo "require k8s.io/kubernetes $want"
            echo
            echo "replace ("
            grep -E '=> \./staging' "$staging" | awk '{print $1}' | grep -v '^k8s.io/sample-' |
                while read -r m; do printf '\t%s => %s v0.%s\n' "$m" "$m" "$minor"; done
            echo ")"
        } >"$dir/go.mod"
        sed -n '/^tool (/,/^)/p' tools/kube/go.mod >>"$dir/go.mod"
        (cd "$dir" && go mod tidy >&2)
    fi
    echo "$dir"
}

# ldflags that make the binaries report their release (kube-apiserver built from a module says
# v0.0.0-master at /version otherwise, and kubectl warns about the skew).
kube_ldflags() {
    local v=$1 major minor
    major=${v#v}; major=${major%%.*}
    minor=${v#v*.}; minor=${minor%%.*}
    local flags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags="$flags -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
        flags="$flags -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    echo "$flags"
}

# build_module DIR OUT LDFLAGS NAME=PACKAGE...: each package built as OUT/NAME.
build_module() {
    local module_dir=$1 out=$2 ldflags=$3
    shift 3
    (
        cd "$module_dir"
        for spec in "$@"; do
            local name=${spec%%=*} pkg=${spec#*=}
            log "building $name into $out (go build; cold this takes minutes)"
            go build -trimpath -ldflags "$ldflags" -o "$out/$name" "$pkg"
        done
    )
}

# A cache key: the module files and the link flags (what decides the binaries).
key() { { cat "$1/go.mod" "$1/go.sum"; echo "$2"; } | sha256sum | cut -c1-12; }

kdir=$(kube_module "${KUBE_VERSION:-}")
kver=$(module_version "$kdir" k8s.io/kubernetes)
kflags=$(kube_ldflags "$kver")
kout="$cache/kube-$kver-$(key "$kdir" "$kflags")"
if [ ! -f "$kout/.complete" ]; then
    mkdir -p "$kout"
    build_module "$kdir" "$kout" "$kflags" \
        kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
        kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager \
        kube-proxy=k8s.io/kubernetes/cmd/kube-proxy kubectl=k8s.io/kubernetes/cmd/kubectl
    touch "$kout/.complete"
fi

hver=$(module_version tools/helm helm.sh/helm/v3)
# As Helm's Makefile does: the Kubernetes version `helm template` and `helm lint` assume is that
# of the client-go Helm is built with (without it they assume v1.20).
kminor=$(module_version tools/helm k8s.io/client-go)
kminor=${kminor#v0.}
kminor=${kminor%%.*}
hflags="-s -w -X helm.sh/helm/v3/internal/version.version=$hver"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    hflags="$hflags -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$kminor"
done
hout="$cache/helm-$hver-$(key tools/helm "$hflags")"
if [ ! -f "$hout/.complete" ]; then
    mkdir -p "$hout"
    build_module tools/helm "$hout" "$hflags" helm=helm.sh/helm/v3/cmd/helm
    touch "$hout/.complete"
fi

ever=$(module_version tools/etcd go.etcd.io/etcd/server/v3)
eflags="-s -w"
eout="$cache/etcd-$ever-$(key tools/etcd "$eflags")"
if [ ! -f "$eout/.complete" ]; then
    mkdir -p "$eout"
    build_module tools/etcd "$eout" "$eflags" etcd=go.etcd.io/etcd/server/v3 etcdctl=go.etcd.io/etcd/etcdctl/v3
    touch "$eout/.complete"
fi

pver=$(module_version tools/prometheus github.com/prometheus/prometheus)
pflags="-s -w"
pout="$cache/prometheus-$pver-$(key tools/prometheus "$pflags")"
if [ ! -f "$pout/.complete" ]; then
    mkdir -p "$pout"
    build_module tools/prometheus "$pout" "$pflags" promtool=github.com/prometheus/prometheus/cmd/promtool
    touch "$pout/.complete"
fi

if [ "${1:-}" = "--metallb" ]; then
    mver=$(module_version tools/metallb go.universe.tf/metallb)
    mflags="-s -w"
    mout="$cache/metallb-$mver-$(key tools/metallb "$mflags")"
    if [ ! -f "$mout/.complete" ]; then
        mkdir -p "$mout"
        build_module tools/metallb "$mout" "$mflags" \
            metallb-controller=go.universe.tf/metallb/controller metallb-speaker=go.universe.tf/metallb/speaker
        touch "$mout/.complete"
    fi
    mchart=$(cd tools/metallb && go list -m -f '{{.Dir}}' go.universe.tf/metallb)/charts/metallb
fi

# One directory of links, so that tests need one path (FERROLB_TOOLS_BIN).
bin="$cache/bin-$kver-$(for d in "$kout" "$hout" "$eout" "$pout"; do basename "$d"; done | sha256sum | cut -c1-12)"
mkdir -p "$bin"
for f in kube-apiserver kube-controller-manager kube-proxy kubectl; do ln -sf "$kout/$f" "$bin/$f"; done
ln -sf "$hout/helm" "$bin/helm"
ln -sf "$eout/etcd" "$bin/etcd"
ln -sf "$eout/etcdctl" "$bin/etcdctl"
ln -sf "$pout/promtool" "$bin/promtool"
if [ -n "${mout:-}" ]; then
    ln -sf "$mout/metallb-controller" "$bin/metallb-controller"
    ln -sf "$mout/metallb-speaker" "$bin/metallb-speaker"
    ln -sfn "$mchart" "$bin/metallb-chart"
fi
echo "$bin"
