"""The project's two images; the second is built on the first's spec. Test settings come from the environment
(registry path unique per run, fixture images of scripts/env), so nothing here reaches Docker Hub."""

import os

from flytekit import ImageSpec

REGISTRY = os.environ["BERTH_FLYTEKIT_REGISTRY"]
COMMON = dict(
    registry=REGISTRY,
    python_exec="/usr/bin/python3",
    builder_config={"uv_image": os.environ["BERTH_TEST_UV_IMAGE"]},
    builder_options={"install_flytekit": False},
)

base_image = ImageSpec(
    name="fk-base",
    base_image=os.environ["BERTH_TEST_PYTHON_IMAGE"],
    packages=["six==1.16.0"],
    env={"LAYER": "base"},
    **COMMON,
)

app_image = ImageSpec(
    name="fk-app",
    base_image=base_image,
    env={"LAYER": "app"},
    copy=["data/motd.txt"],
    **COMMON,
)
