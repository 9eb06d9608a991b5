#!/usr/bin/env bash
# The steps of the annals container image, kept out of the Dockerfile so the test suite runs
# them too (tests/tests/container.rs) and the image cannot silently rot.
#
#   container/image.sh deps                 Debian packages the build needs (as root)
#   container/image.sh build ROOT           release build of `annals`, then `assemble` into ROOT
#   container/image.sh assemble BIN ROOT    lay out the image's files under ROOT from binary BIN
#
# The layout (the original's, /app as the working directory):
#   ROOT/usr/local/bin/annals
#   ROOT/app/.dolittle/runtime.yml   configuration: replace it, or mount the original's files
#                                    (runtime.yml, or endpoints/platform/resources/... .json)
#   ROOT/app/data/                   annals' event store (a volume)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root_dir=$(dirname "$here")

usage() {
    sed -n '4,7p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

assemble() {
    local bin=$1 root=$2
    [[ -x "$bin" ]] || { echo "image.sh: $bin is not an executable" >&2; exit 1; }
    mkdir -p "$root/usr/local/bin" "$root/app/.dolittle" "$root/app/data"
    install -m 0755 "$bin" "$root/usr/local/bin/annals"
    install -m 0644 "$here/runtime.yml" "$root/app/.dolittle/runtime.yml"
}

case "${1:-}" in
deps)
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        libclang-dev ca-certificates >/dev/null
    ;;
build)
    [[ $# -eq 2 ]] || usage
    cd "$root_dir"
    cargo build --release --locked --bin annals
    assemble "${CARGO_TARGET_DIR:-$root_dir/target}/release/annals" "$2"
    ;;
assemble)
    [[ $# -eq 3 ]] || usage
    assemble "$2" "$3"
    ;;
*)
    usage
    ;;
esac
