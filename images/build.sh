#!/usr/bin/env bash
# Builds the Paddock image without a container engine: one image holding paddock-server,
# paddock-sidecar, paddock-operator and the paddock CLI, written as an OCI image archive.
#
#   images/build.sh <dir of the built binaries> <output archive>
#
# The image is what the Dockerfile's runtime stage makes, assembled from this machine's
# build instead of a base image (no registry can be reached to pull one): the binaries in
# /usr/local/bin, stripped of debug info; exactly the shared libraries `ldd` says they load,
# copied from this machine (Debian, as the Dockerfile's build stage); /etc/passwd and
# /etc/group naming the non-root user 65532 the pods run as; the CA bundle; /tmp. umoci lays out
# the image; the archive is the OCI layout in one tar, named `paddock:<version>` both ways the
# loaders read a name (`org.opencontainers.image.ref.name` for podman and skopeo,
# `io.containerd.image.name` for containerd, kind and docker ≥ 25).
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -eq 2 ] || { echo "usage: $0 <binary dir> <output archive>" >&2; exit 2; }
bin_dir=$1
out=$2
binaries=(paddock-server paddock-sidecar paddock-operator paddock)
version=$(awk '/^\[workspace.package\]/ { p = 1 } p && /^version = / { gsub(/version = |"/, ""); print; exit }' Cargo.toml)
repository=${PADDOCK_IMAGE_REPOSITORY:-paddock}

for tool in umoci ldd objcopy python3; do
    command -v "$tool" >/dev/null || { echo "images/build.sh: $tool is missing (make images installs umoci)" >&2; exit 1; }
done
for b in "${binaries[@]}"; do
    [ -x "$bin_dir/$b" ] || { echo "images/build.sh: no executable $bin_dir/$b (build it first)" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/paddock-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
layout=$work/oci
bundle=$work/bundle

# As a user other than root, umoci keeps file ownership in the image's metadata instead.
rootless=()
[ "$(id -u)" -eq 0 ] || rootless=(--rootless)

umoci init --layout "$layout"
umoci new --image "$layout:$version"
umoci unpack "${rootless[@]}" --image "$layout:$version" "$bundle"
root=$bundle/rootfs

install -d -m 0755 "$root/usr/local/bin" "$root/etc/ssl/certs"
install -d -m 1777 "$root/tmp"
for b in "${binaries[@]}"; do
    objcopy --strip-debug "$bin_dir/$b" "$root/usr/local/bin/$b"
    chmod 0755 "$root/usr/local/bin/$b"
done

# Every library the binaries load, at the path the loader finds it on this machine, plus the
# loader itself. A library ldd cannot find stops the build here rather than in a pod.
libs=$(for b in "${binaries[@]}"; do ldd "$bin_dir/$b"; done)
if grep -q 'not found' <<<"$libs"; then
    echo "images/build.sh: unresolved libraries:" >&2
    grep 'not found' <<<"$libs" >&2
    exit 1
fi
for lib in $(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$libs" | sort -u); do
    install -d -m 0755 "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done

cat > "$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat > "$root/etc/group" <<'EOF'
root:x:0:
nonroot:x:65532:
EOF
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
fi

umoci repack --image "$layout:$version" "$bundle"
umoci config --image "$layout:$version" \
    --os linux --architecture amd64 \
    --config.user 65532:65532 \
    --config.workingdir / \
    --config.env PATH=/usr/local/bin:/usr/bin:/bin \
    --config.entrypoint /usr/local/bin/paddock-server \
    --config.label org.opencontainers.image.title=paddock \
    --config.label "org.opencontainers.image.version=$version"
umoci gc --layout "$layout"

python3 - "$layout/index.json" "docker.io/library/$repository:$version" <<'EOF'
import json, sys
path, name = sys.argv[1], sys.argv[2]
with open(path) as f:
    index = json.load(f)
for manifest in index["manifests"]:
    manifest.setdefault("annotations", {})["io.containerd.image.name"] = name
with open(path, "w") as f:
    json.dump(index, f)
EOF

mkdir -p "$(dirname "$out")"
tar -C "$layout" --sort=name --owner=0 --group=0 --numeric-owner -cf "$out.tmp" .
mv "$out.tmp" "$out"
echo "images/build.sh: $repository:$version -> $out" >&2
