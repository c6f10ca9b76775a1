#!/usr/bin/env bash
# Installs the reference Mooncake Store, the published non-CUDA wheel from PyPI, into its
# own venv, so that benches/compare/run.sh (and benches/netns/run.sh) can measure it
# beside ours with the same driver.
#
#   benches/compare/setup_ref.sh              # into target/venv-ref
#   REF_VENV=/some/venv REF_VERSION=0.3.13.post1 benches/compare/setup_ref.sh
#
# The wheel's binaries load libibverbs, librdmacm and libnuma even for TCP; they are
# installed with apt when missing.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
REF_VENV=${REF_VENV:-$ROOT/target/venv-ref}
REF_VERSION=${REF_VERSION:-0.3.13.post1}
if ! ldconfig -p | grep -q 'libibverbs.so.1'; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libibverbs1 librdmacm1 libnuma1 >/dev/null
fi
[ -x "$REF_VENV/bin/python" ] || python3 -m venv "$REF_VENV"
"$REF_VENV/bin/pip" install -q "mooncake-transfer-engine-non-cuda==$REF_VERSION"
# (gflags programs exit 1 after --help, so --version is the probe)
if ! "$REF_VENV/bin/mooncake_master" --version >/dev/null 2>&1; then
  echo "setup_ref: the reference's mooncake_master does not start from $REF_VENV" >&2
  exit 1
fi
echo "reference $REF_VERSION installed in $REF_VENV"
