#!/usr/bin/env bash
# The whole test suite, as CI runs it: `bash scripts/test.sh` (as root: it starts the engines).
#
# 1. scripts/env/up.sh installs and starts, idempotently, what the end-to-end tests use: containerd, dockerd,
#    Podman services, an authenticated registry on 127.0.0.1:5000 and fixture images (first run ~4 min, then ~2 s).
# 2. cargo test runs every test of the workspace against them. Tests that need an engine fail, never skip,
#    when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
    echo "scripts/test.sh: run as root (it installs and starts container engines): sudo bash scripts/test.sh" >&2
    exit 1
fi

bash scripts/env/up.sh
# shellcheck disable=SC1091
source /var/lib/berth-env/env.sh

cargo test --workspace --locked "$@"
