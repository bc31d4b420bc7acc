#!/usr/bin/env bash
# Builds the porcupine linearizability checker (e2e/porcupine, Go) once per machine and prints
# the path of its binary. The binary is kept under a directory named after a hash of the
# program's go.mod, go.sum and main.go, so a change to any of them builds a new one and a
# present one is used as is. Go's module and build caches live under the same cache, not in
# ~/go. Only go.mod and go.sum are committed: the sources of porcupine come from the Go module
# proxy, checked against go.sum.
set -euo pipefail
cd "$(dirname "$0")/.."

src=e2e/porcupine
cache=${PADDOCK_CACHE:-$HOME/.cache/paddock}
hash=$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-16)
out=$cache/tools/porcupine-$hash
bin=$out/paddock-porcupine
if [ -x "$bin" ]; then
    echo "$bin"
    exit 0
fi

go=$(command -v go || echo /usr/local/go/bin/go)
[ -x "$go" ] || { echo "porcupine.sh: no Go toolchain (looked on PATH and at /usr/local/go/bin/go)" >&2; exit 1; }
export GOPATH=$cache/go GOMODCACHE=$cache/go/mod GOCACHE=$cache/go/cache GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
mkdir -p "$cache/tools"
# Built beside its final place and renamed into it, so two builds at once cannot leave half a
# binary where the other looks.
tmp=$(mktemp -d "$cache/tools/.porcupine-build.XXXXXX")
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
echo "porcupine.sh: building the porcupine checker once into $out" >&2
(cd "$src" && "$go" build -trimpath -o "$tmp/paddock-porcupine" .) >&2
if ! mv -T "$tmp" "$out" 2>/dev/null; then
    # Another build got there first.
    [ -x "$bin" ] || { echo "porcupine.sh: could not place the binary at $out" >&2; exit 1; }
fi
echo "$bin"
