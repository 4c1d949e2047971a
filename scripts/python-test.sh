#!/usr/bin/env bash
# The flytekit plugin's tests (python/tests), as CI runs them: `bash scripts/python-test.sh [PYTEST ARGS...]`.
#
# 1. A venv with flytekit 1.16.31 from PyPI, pytest and maturin, cached in $BERTH_FLYTEKIT_VENV (default
#    /var/lib/berth-env/flytekit-venv; made from /usr/bin/python3 so that the rootless test user can run it too).
# 2. The berth package built from this checkout and installed into it. The wheel takes the debug binary that
#    `cargo test` builds anyway (`maturin build --profile dev` shares the target folder and finds it fresh), so
#    CI compiles berth once; `pip install .` for users still builds a release binary.
# 3. pytest against the engines and registry of scripts/env (run scripts/env/up.sh first, as scripts/test.sh does).
#    "No tests ran" (pytest exit 5) counts as a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

FLYTEKIT_VERSION=1.16.31
venv=${BERTH_FLYTEKIT_VENV:-/var/lib/berth-env/flytekit-venv}
py="$venv/bin/python"

closing() { echo "========================= python tests: $* ========================="; }

if [[ $(id -u) -ne 0 ]]; then
    echo "scripts/python-test.sh: run as root (a test runs pyflyte as the rootless Podman user)" >&2
    closing "not run"; exit 1
fi
if [[ ! -f /var/lib/berth-env/env.sh ]]; then
    echo "scripts/python-test.sh: /var/lib/berth-env/env.sh is missing: run scripts/env/up.sh first" >&2
    closing "not run"; exit 1
fi
# shellcheck disable=SC1091
source /var/lib/berth-env/env.sh

have_venv() {
    [[ -x "$py" ]] && "$py" -c "import sys; from importlib.metadata import version as v; sys.exit(0 if v('flytekit') == '$FLYTEKIT_VERSION' and v('pytest') and v('maturin') else 1)" 2>/dev/null
}
if ! have_venv; then
    echo "scripts/python-test.sh: setting up $venv (flytekit==$FLYTEKIT_VERSION, pytest, maturin)" >&2
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "flytekit==$FLYTEKIT_VERSION" pytest "maturin>=1.7,<2"
    have_venv || { echo "scripts/python-test.sh: venv setup failed" >&2; closing "not run"; exit 1; }
fi

wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
cargo build --locked -p berth-cli --bin berth
"$venv/bin/maturin" build --locked --profile dev --out "$wheels" >/dev/null
"$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheels"/berth-*.whl
# The rootless user runs pyflyte and berth from this venv.
chmod -R a+rX "$venv"

set +e
(cd "$repo/python/tests" && "$py" -m pytest -p no:cacheprovider -rfE "$@")
status=$?
set -e
case $status in
    0) ;;
    5) echo "scripts/python-test.sh: pytest collected no tests; that is a failure here" >&2
       closing "FAILED (no tests ran)"; exit 1 ;;
    *) closing "FAILED (pytest exit $status)"; exit "$status" ;;
esac
closing "passed"
