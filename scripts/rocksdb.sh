#!/usr/bin/env bash
# Builds RocksDB once, optimized, as a static library in the cache, and prints the directory
# that holds it. Every cargo command in the Makefile (run, test, clippy, bench; debug and
# release) links this one library through librocksdb-sys's ROCKSDB_LIB_DIR/ROCKSDB_STATIC
# instead of compiling RocksDB's C++ itself: cargo would compile it once per profile, once more
# for `cargo check`/clippy when build-script hashes differ, and again from another clone path.
#
# The library comes from the very librocksdb-sys version in Cargo.lock, built by cargo in a
# throw-away crate (release profile, no compression features, as the workspace uses it), so
# its sources and compile flags are the crate's own. ~15-20 minutes on 2 cores, once per
# machine; afterwards this script only prints the directory.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(awk '/^name = "librocksdb-sys"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
[ -n "$version" ] || { echo "rocksdb.sh: librocksdb-sys is not in Cargo.lock" >&2; exit 1; }
cache=${PADDOCK_CACHE:-$HOME/.cache/paddock}
out=$cache/rocksdb/$version
if [ -f "$out/librocksdb.a" ]; then
    echo "$out"
    exit 0
fi

work=$cache/rocksdb/build-$version
mkdir -p "$work/src"
cat >"$work/Cargo.toml" <<EOF
[package]
name = "paddock-rocksdb-build"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
librocksdb-sys = { version = "=$version", default-features = false, features = ["bindgen-runtime"] }

[profile.release]
debug = false
EOF
echo "" >"$work/src/lib.rs"
echo "rocksdb.sh: building RocksDB $version once into $out (15-20 minutes on 2 cores)" >&2
# The variables that would make librocksdb-sys link a library instead of building one.
env -u ROCKSDB_LIB_DIR -u ROCKSDB_STATIC cargo build --release --quiet \
    --manifest-path "$work/Cargo.toml" --target-dir "$work/target" >&2
lib=$(find "$work/target/release/build" -path '*librocksdb-sys-*/out/librocksdb.a' | head -n 1)
[ -n "$lib" ] || { echo "rocksdb.sh: the build left no librocksdb.a" >&2; exit 1; }
mkdir -p "$out.tmp"
cp "$lib" "$out.tmp/librocksdb.a"
rm -rf "$out" && mv "$out.tmp" "$out"
rm -rf "$work"
echo "$out"
