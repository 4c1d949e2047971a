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
    echo "scripts/test.sh: run it as root (it installs and starts container engines)" >&2
    exit 1
fi

# End-to-end builds leave engine build caches behind, run after run; when the disk runs low (a full disk fails
# tests in confusing places), drop them. Fixture and test images come back from the registry when needed.
free_gib=$(df --output=avail -BG / | tail -1 | tr -dc '0-9')
if (( free_gib < 30 )); then
    echo "scripts/test.sh: only ${free_gib} GiB free on /; pruning the engines' build caches and unused images" >&2
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
        docker builder prune -af >/dev/null || true
        docker image prune -af >/dev/null || true
    fi
    if command -v podman >/dev/null; then
        podman image prune -af >/dev/null 2>&1 || true
    fi
    echo "scripts/test.sh: $(df --output=avail -BG / | tail -1 | tr -dc '0-9') GiB free now" >&2
fi

bash scripts/env/up.sh
# shellcheck disable=SC1091
source /var/lib/berth-env/env.sh

cargo test --workspace --locked "$@"
