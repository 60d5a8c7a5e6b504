#!/bin/sh
# Writes an empty source file at every target the workspace's manifests name (and at the default src/lib.rs and
# src/main.rs), where none exists yet. With only the manifests copied in, `cargo build` then resolves the
# workspace and compiles the dependencies alone: the Dockerfile caches that layer until Cargo.toml/Cargo.lock
# change. cluster/check runs this on a bare copy of the manifests, so a new target that would break the image
# build breaks CI instead.
#   cluster/stub-sources.sh [ROOT]     (default: the repository this script is in)
set -eu
ROOT="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
cd "$ROOT"
stub() {
  [ -e "$1" ] && return 0
  mkdir -p "$(dirname "$1")"
  echo 'fn main() {}' > "$1"
}
stub src/lib.rs
stub src/main.rs
for manifest in Cargo.toml */Cargo.toml; do
  [ -f "$manifest" ] || continue
  dir="$(dirname "$manifest")"
  stub "$dir/src/main.rs"
  # Explicit targets ([[bin]], [[example]], [[bench]], [[test]]): their `path = "…"` lines.
  sed -n 's/^path *= *"\([^"]*\)".*/\1/p' "$manifest" | while read -r path; do stub "$dir/$path"; done
done
