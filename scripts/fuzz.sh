#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for FUZZ_SECONDS each (default 20): the
# decoders a network peer reaches (the master's framed requests, protobuf messages, the
# transfer engine's headers and control payloads, metadata-server answers and segment
# descriptors) and the text users hand us (flags, sizes, durations, addresses).
# Not part of scripts/test.sh: libFuzzer needs the nightly toolchain and sanitizers,
# and a useful run takes minutes. Findings land in fuzz/artifacts/<target>/. Each run
# starts from the seed corpus in fuzz/seeds/<target>/ (small inputs that reach each
# decoder's paths, from coverage-guided runs, minimized).
#
#   scripts/fuzz.sh                    # every target, 20 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh master_frame
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz --help >/dev/null 2>&1 || cargo install cargo-fuzz
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
failed=()
for t in "${targets[@]}"; do
  echo "=== fuzz $t (${FUZZ_SECONDS:-20} s)"
  # New inputs go to corpus/<target> (not kept in git); seeds/<target> is the seed
  # corpus kept in the repository, read only.
  mkdir -p "corpus/$t"
  dirs=("corpus/$t")
  [ -d "seeds/$t" ] && dirs+=("seeds/$t")
  if ! cargo +nightly fuzz run "$t" "${dirs[@]}" -- -max_total_time="${FUZZ_SECONDS:-20}" -rss_limit_mb=4096; then
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: findings in ${failed[*]} (inputs under fuzz/artifacts/)"; exit 1
fi
echo "fuzz: ${#targets[@]} targets ran clean"
