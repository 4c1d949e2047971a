#!/usr/bin/env bash
# Regenerate tests/corpus/expected.tsv with the real flytekit.
#
#   scripts/flytekit-corpus/regen.sh                 # rewrite tests/corpus/expected.tsv
#   scripts/flytekit-corpus/regen.sh --specs a.yaml  # any other args are passed to tags.py
#   scripts/flytekit-corpus/regen.sh --differential --berth target/debug/berth [--count 1000]
#                                                    # differential.py: generated specs, berth vs flytekit
#
# Uses $FLYTEKIT_PYTHON if set (must have flytekit==1.16.31 and pyyaml), otherwise
# creates/reuses a venv in ${XDG_CACHE_HOME:-$HOME/.cache}/berth/flytekit-venv.
set -euo pipefail

FLYTEKIT_VERSION=1.16.31
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

have_deps() {
  # (importing flytekit would leave temp dirs behind, so only ask the package metadata)
  "$1" -c "import sys, yaml; from importlib.metadata import version; sys.exit(0 if version('flytekit') == '$FLYTEKIT_VERSION' else 1)" 2>/dev/null
}

if [[ -n "${FLYTEKIT_PYTHON:-}" ]]; then
  py="$FLYTEKIT_PYTHON"
  have_deps "$py" || { echo "error: $py lacks flytekit==$FLYTEKIT_VERSION and/or pyyaml" >&2; exit 1; }
else
  venv="${XDG_CACHE_HOME:-$HOME/.cache}/berth/flytekit-venv"
  py="$venv/bin/python"
  if [[ ! -x "$py" ]] || ! have_deps "$py"; then
    echo "setting up $venv (flytekit==$FLYTEKIT_VERSION)" >&2
    mkdir -p "$(dirname "$venv")"
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/pip" install --quiet "flytekit==$FLYTEKIT_VERSION" pyyaml
    have_deps "$py" || { echo "error: venv setup failed" >&2; exit 1; }
  fi
fi

if [[ ${1:-} == --differential ]]; then
  exec "$py" "$here/differential.py" "${@:2}"
fi
if [[ $# -gt 0 ]]; then
  exec "$py" "$here/tags.py" "$@"
fi
exec "$py" "$here/tags.py" --cases "$repo/tests/corpus/cases" --out "$repo/tests/corpus/expected.tsv"
