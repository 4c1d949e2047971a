#!/usr/bin/env bash
# The whole test suite, as CI runs it: `bash scripts/test.sh`.
# Needs cargo and git; everything else the tests use they create themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v git >/dev/null; then
    echo "scripts/test.sh: git is needed (the tag corpus honours .gitignore through git): apt-get install git" >&2
    exit 1
fi

cargo test --workspace --locked "$@"
