#!/usr/bin/env bash
# Runs one libFuzzer target for a while: fuzz/run.sh TARGET [SECONDS] [LIBFUZZER_ARGS...]
#
#   TARGET   one of fuzz/fuzz_targets/*.rs (segment_header, record_frame, record_payload,
#            seal_trailer, open_log, ops)
#   SECONDS  how long to fuzz (default 60)
#
# Builds with cargo-fuzz (installed with `cargo install cargo-fuzz --locked` if missing) on the
# pinned stable toolchain: cargo-fuzz needs nightly-only flags (-Zsanitizer=address, sanitizer
# coverage), which RUSTC_BOOTSTRAP=1 unlocks on stable. Set ANNALS_FUZZ_SANITIZER=none to build
# without AddressSanitizer (faster, fewer findings).
#
# Inputs: the checked-in seeds of fuzz/corpus/TARGET/ are read, never written; new inputs
# libFuzzer finds go to a working corpus under the target dir
# ($CARGO_TARGET_DIR/fuzz-corpus/TARGET, default fuzz/target/...). Crashes land in
# fuzz/artifacts/TARGET/ (git-ignored); reproduce one with
#   cargo test --manifest-path fuzz/Cargo.toml  (after copying it into fuzz/corpus/TARGET/)
# or fuzz/run.sh TARGET 0 fuzz/artifacts/TARGET/crash-...
set -euo pipefail

fuzz_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$fuzz_dir")

if [[ $# -lt 1 ]]; then
    echo "usage: $0 TARGET [SECONDS] [LIBFUZZER_ARGS...]" >&2
    echo "targets: $(cd "$fuzz_dir/fuzz_targets" && ls ./*.rs | sed 's|^\./||; s|\.rs$||' | tr '\n' ' ')" >&2
    exit 2
fi
target=$1
seconds=${2:-60}
shift $(($# < 2 ? $# : 2))
if [[ ! -f "$fuzz_dir/fuzz_targets/$target.rs" ]]; then
    echo "$0: no fuzz target '$target' in $fuzz_dir/fuzz_targets" >&2
    exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "$0: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$fuzz_dir/target}
work_corpus=$CARGO_TARGET_DIR/fuzz-corpus/$target
mkdir -p "$work_corpus"

# A corpus file argument (an artifact to reproduce) replaces the directories; a time of 0 with
# no file runs until the first crash.
inputs=("$work_corpus" "$fuzz_dir/corpus/$target")
libfuzzer_args=(-timeout=30 -print_final_stats=1)
if [[ $seconds != 0 ]]; then
    libfuzzer_args+=("-max_total_time=$seconds")
fi
for arg in "$@"; do
    if [[ -f $arg ]]; then
        inputs=("$arg")
    else
        libfuzzer_args+=("$arg")
    fi
done

cd "$root"
exec cargo fuzz run \
    --fuzz-dir "$fuzz_dir" \
    --features libfuzzer \
    --sanitizer "${ANNALS_FUZZ_SANITIZER:-address}" \
    "$target" "${inputs[@]}" -- "${libfuzzer_args[@]}"
