#!/usr/bin/env bash
# From a fresh clone to a pushed image, as root: brings up the local engines and the authenticated registry
# (scripts/env/up.sh), builds berth, logs in to the registry and builds examples/hello/spec.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/env/up.sh
# shellcheck disable=SC1091
source /var/lib/berth-env/env.sh

echo "building berth (a first release build compiles 226 crates: a few minutes on 2 cores)"
cargo build --release -p berth-cli
berth=target/release/berth

# Keep the example's credentials out of your own ~/.docker/config.json: they go to $DOCKER_CONFIG/config.json.
export DOCKER_CONFIG=/var/lib/berth-env/quickstart-docker-config
"$berth" login "$BERTH_TEST_REGISTRY" --username "$BERTH_TEST_REGISTRY_USER" --password-stdin \
    < "$BERTH_TEST_REGISTRY_PASSWORD_FILE"

echo "+ berth name examples/hello/spec.yaml"
"$berth" name examples/hello/spec.yaml
echo "+ berth build examples/hello/spec.yaml"
"$berth" build examples/hello/spec.yaml

# This script's PATH and DOCKER_CONFIG end with it: say how to get the same berth and login in your shell.
cat <<EOF

To use this berth and its login from your shell (the login is in $DOCKER_CONFIG/config.json):

  export PATH="$PWD/target/release:\$PATH"
  export DOCKER_CONFIG=$DOCKER_CONFIG
  berth build --force examples/hello/spec.yaml
EOF
