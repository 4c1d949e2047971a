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

# End-to-end builds leave engine build caches behind, run after run, and a full disk fails tests in confusing
# places. Pruning would also delete a developer's own images and caches, so it is opt-in: CI sets
# BERTH_TEST_PRUNE=1 (.ci/run); elsewhere the script only says how low the disk is.
free_gib=$(df --output=avail -BG / | tail -1 | tr -dc '0-9')
if (( free_gib < 30 )); then
    if [[ ${BERTH_TEST_PRUNE:-} == 1 ]]; then
        echo "scripts/test.sh: only ${free_gib} GiB free on /; pruning the engines' build caches and unused images (BERTH_TEST_PRUNE=1)" >&2
        if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
            docker builder prune -af >/dev/null || true
            docker image prune -af >/dev/null || true
        fi
        if command -v podman >/dev/null; then
            podman image prune -af >/dev/null 2>&1 || true
        fi
        # containerd: every image, and berth's step cache (its records, and the root label they keep on their
        # blobs); the collector then takes the snapshots. Tests pull their fixtures from the registry again.
        if command -v ctr >/dev/null && timeout 10 ctr --connect-timeout 2s version >/dev/null 2>&1; then
            for ns in $(ctr namespaces ls -q); do
                ctr -n "$ns" images ls -q | xargs -r ctr -n "$ns" images rm >/dev/null 2>&1 || true
                ctr -n "$ns" content ls 2>/dev/null | awk '/containerd.io\/gc.root=/ {print $1}' |
                    xargs -r -I{} ctr -n "$ns" content label {} containerd.io/gc.root= >/dev/null 2>&1 || true
            done
            rm -rf /var/lib/berth/containerd/*/steps
        fi
        echo "scripts/test.sh: $(df --output=avail -BG / | tail -1 | tr -dc '0-9') GiB free now" >&2
    else
        echo "scripts/test.sh: only ${free_gib} GiB free on /; the end-to-end builds may fill it. BERTH_TEST_PRUNE=1 lets this script prune every engine's build caches and unused images (your own too) first" >&2
    fi
fi

bash scripts/env/up.sh
# shellcheck disable=SC1091
source /var/lib/berth-env/env.sh
# This script starts every engine, so every daemon suite runs and a missing engine fails (a laptop without the
# daemons runs `BERTH_TEST_ENGINES=none cargo test` instead; see the README's Tests section).
export BERTH_TEST_ENGINES=all

cargo test --workspace --locked "$@"
# A berth built with one backend: the engine table, and the message for an engine compiled out.
cargo test --locked -p berth-engines --no-default-features --features docker

# containerd's RUN layers where overlay's redirect_dir and metacopy are on (a RUN step's upper folder then holds
# pointers into lower layers, and berth must take the layer from containerd's diff service): the module's defaults
# are switched on for this one step, when nothing else runs, and put back after. It builds in a containerd
# namespace of its own, emptied afterwards: a snapshot made with metacopy on holds metadata-only files that an
# overlay mount without it refuses (EPERM), so no later build may reuse one.
overlay_ns=berth-test-overlay-redirects
empty_namespace() {
    local keys round
    ctr -n "$1" images ls -q | xargs -r ctr -n "$1" images rm >/dev/null 2>&1 || true
    for round in $(seq 30); do
        keys=$(ctr -n "$1" snapshots ls 2>/dev/null | awk 'NR > 1 {print $1}' || true)
        [[ -z $keys ]] && break
        for key in $keys; do ctr -n "$1" snapshots rm "$key" >/dev/null 2>&1 || true; done
    done
    ctr -n "$1" content ls -q 2>/dev/null | xargs -r ctr -n "$1" content rm >/dev/null 2>&1 || true
    rm -rf "/var/lib/berth/containerd/$1"
}
params=/sys/module/overlay/parameters
if [[ ! -w $params/redirect_dir || ! -w $params/metacopy ]]; then
    echo "scripts/test.sh: cannot switch overlay's redirect_dir/metacopy in $params (load the overlay module, run as root)" >&2
    exit 1
fi
old_redirect=$(cat "$params/redirect_dir") old_metacopy=$(cat "$params/metacopy")
restore_overlay() {
    echo "$old_metacopy" >"$params/metacopy"
    echo "$old_redirect" >"$params/redirect_dir"
    empty_namespace "$overlay_ns"
}
trap restore_overlay EXIT
echo Y >"$params/redirect_dir"
echo Y >"$params/metacopy"
# --workspace keeps the features the suite was built with, so nothing is compiled again
CONTAINERD_NAMESPACE=$overlay_ns cargo test --workspace --locked --test conformance_containerd -- run_layers_carry
restore_overlay
trap - EXIT

# The flytekit plugin: the package built from this checkout (with the binary cargo test built), pyflyte on every
# engine (scripts/python-test.sh makes and caches the venv with flytekit 1.16.31).
bash scripts/python-test.sh

# berth's names against flytekit 1.16.31's for 1,000 specs generated with a fixed seed, in the same venv.
FLYTEKIT_PYTHON=${BERTH_FLYTEKIT_VENV:-/var/lib/berth-env/flytekit-venv}/bin/python \
    bash scripts/flytekit-corpus/regen.sh --differential --berth "${CARGO_TARGET_DIR:-target}/debug/berth" --count 1000
