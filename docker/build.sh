#!/usr/bin/env bash
# Builds the runtime image `mooncake:local` from this workspace.
#
#   docker/build.sh                 # BASE_IMAGE=debian:bookworm-slim by default
#   BASE_IMAGE=ubuntu:22.04 docker/build.sh
#
# Steps: release binaries and the Python wheel are built on the host (sharing the
# workspace's release build), copied into target/docker/context, then `docker build
# --network=none` layers them onto the base image. When the base image is absent and
# cannot be pulled (no registry reachable), it is made locally with debootstrap from
# Debian's package mirror, so the same Dockerfile runs unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BASE_IMAGE=${BASE_IMAGE:-debian:bookworm-slim}
TAG=${TAG:-mooncake:local}
CTX=$ROOT/target/docker/context
say() { echo "[docker/build] $*"; }

say "release binaries"
cargo build --release --workspace --bins
rm -rf "$CTX"; mkdir -p "$CTX/bin" "$CTX/wheel"
for b in mooncake_master mooncake_store mooncake_client mooncake_cli transfer_bench; do
  if [ -x "target/release/$b" ]; then cp "target/release/$b" "$CTX/bin/"; else say "warning: no $b binary"; fi
done

say "python wheel"
VENV=${MOONCAKE_VENV:-$ROOT/target/venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m maturin --version >/dev/null 2>&1 || "$VENV/bin/pip" install -q maturin
"$VENV/bin/python" -m maturin build --release -m crates/mooncake-py/Cargo.toml -o "$CTX/wheel" >/dev/null

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  if ! timeout 60 docker pull "$BASE_IMAGE" >/dev/null 2>&1; then
    case "$BASE_IMAGE" in
      debian:bookworm*) ;;
      *) say "base image $BASE_IMAGE is absent and cannot be pulled"; exit 1 ;;
    esac
    say "making $BASE_IMAGE with debootstrap (no registry reachable)"
    command -v debootstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
    ROOTFS=$ROOT/target/docker/rootfs
    rm -rf "$ROOTFS"
    debootstrap --variant=minbase --include=python3 bookworm "$ROOTFS" http://deb.debian.org/debian >"$ROOT/target/docker/debootstrap.log" 2>&1 \
      || { tail -5 "$ROOT/target/docker/debootstrap.log"; exit 1; }
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
    tar -C "$ROOTFS" -c . | docker import - "$BASE_IMAGE" >/dev/null
    rm -rf "$ROOTFS"
  fi
fi

say "docker build $TAG (base $BASE_IMAGE)"
docker build --network=none --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$TAG" -f docker/Dockerfile "$CTX"
say "built $TAG: $(docker image inspect "$TAG" --format '{{.Size}}' | awk '{printf "%.1f MiB", $1/1048576}')"
