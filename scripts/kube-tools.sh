#!/usr/bin/env bash
# Builds the Kubernetes control plane the tests run, and helm, once per machine from pinned Go
# module versions, and prints the directory holding the binaries:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, kubectl (from
#   e2e/kube-tools/k8s: k8s.io/kubernetes with its staging modules replaced by their releases,
#   and go.etcd.io/etcd/server/v3 at the version Kubernetes itself requires),
#   coredns (e2e/kube-tools/coredns), helm (e2e/kube-tools/helm), and cert-manager-controller
#   with cert-manager's CRDs in cert-manager-crds/ (e2e/kube-tools/cert-manager: a main of our
#   own over cert-manager's controller packages, whose own main the proxy does not serve).
# Four modules, because each program's own go.mod pins versions the others disagree with.
# Only go.mod, go.sum (and cert-manager's main.go) are committed; the sources come from the Go
# module proxy, checked against go.sum. The binaries live under a directory named after a hash
# of those files (and of this script), so a version change builds anew and a present build is
# used as is. Cold, on 2 cores, this takes about 22 minutes: 12 for the Kubernetes binaries (8
# of them kube-apiserver; Go's build cache under the same cache shares the packages between
# them), 4 for CoreDNS, 2 for helm, 4 for cert-manager. A version change rebuilds in minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

src=e2e/kube-tools
cache=${PADDOCK_CACHE:-$HOME/.cache/paddock}
hash=$(cat "$0" "$src"/*/go.mod "$src"/*/go.sum "$src"/*/*.go | sha256sum | cut -c1-16)
out=$cache/tools/kube-$hash
if [ -f "$out/.complete" ]; then
    touch "$out/.complete"  # last use: builds unused for two weeks are pruned below
    echo "$out"
    exit 0
fi
# Builds of other versions nothing used for two weeks (~600 MB each).
find "$cache/tools" -maxdepth 2 -path "$cache/tools/kube-*/.complete" -mtime +14 -printf '%h\n' 2>/dev/null |
    xargs -r rm -rf

go=$(command -v go || echo /usr/local/go/bin/go)
[ -x "$go" ] || { echo "kube-tools.sh: no Go toolchain (looked on PATH and at /usr/local/go/bin/go)" >&2; exit 1; }
export GOPATH=$cache/go GOMODCACHE=$cache/go/mod GOCACHE=$cache/go/cache GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
mkdir -p "$cache/tools"
tmp=$(mktemp -d "$cache/tools/.kube-build.XXXXXX")
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT

# The version a module of a tools module resolves to, as `go list -m` says.
module_version() { (cd "$src/$1" && "$go" list -m -f '{{.Version}}' "$2"); }

build() { # <module dir> <output name> <package> [ldflags]
    local started=$SECONDS
    echo "kube-tools.sh: building $2 ($3)" >&2
    (cd "$src/$1" && "$go" build -trimpath -ldflags "-s -w ${4:-}" -o "$tmp/$2" "$3") >&2
    echo "kube-tools.sh: $2 took $((SECONDS - started)) s" >&2
}

kube=$(module_version k8s k8s.io/kubernetes)
minor=$(cut -d. -f2 <<<"$kube")
# What Kubernetes' own build stamps (hack/lib/version.sh): servers and clients report it, and
# kubectl and helm compare it.
stamp=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    stamp+=" -X $pkg.gitVersion=$kube -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    stamp+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
for cmd in kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl; do
    build k8s "$cmd" "k8s.io/kubernetes/cmd/$cmd" "$stamp"
done
build k8s etcd go.etcd.io/etcd/server/v3
build coredns coredns github.com/coredns/coredns
helm=$(module_version helm helm.sh/helm/v3)
# The Kubernetes version helm assumes without a cluster (template, lint), as helm's Makefile
# stamps it: that of the client-go helm is built with.
helm_kube_minor=$(module_version helm k8s.io/client-go | cut -d. -f2)
helm_stamp="-X helm.sh/helm/v3/internal/version.version=$helm"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    helm_stamp+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$helm_kube_minor"
done
build helm helm helm.sh/helm/v3/cmd/helm "$helm_stamp"

build cert-manager cert-manager-controller .
crds=$(cd "$src/cert-manager" && "$go" list -m -f '{{.Dir}}' github.com/cert-manager/cert-manager)/deploy/crds
mkdir "$tmp/cert-manager-crds"
cp "$crds"/cert-manager.io_*.yaml "$tmp/cert-manager-crds/"
chmod 644 "$tmp"/cert-manager-crds/*

touch "$tmp/.complete"
if ! mv -T "$tmp" "$out" 2>/dev/null; then
    # Another build got there first.
    [ -f "$out/.complete" ] || { echo "kube-tools.sh: could not place the binaries at $out" >&2; exit 1; }
fi
echo "$out"
