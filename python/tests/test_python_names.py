"""Names of ImageSpecs only Python can write (enum members, nested spec objects, LOADED_MODULES, values YAML has no
form for): the plugin's name equals `image_name()`, and what berth cannot reproduce is refused, not guessed."""

import math
import pathlib
import sys

import pytest
from flytekit.constants import CopyFileDetection
from flytekit.image_spec.image_spec import ImageSpec

from berth_flytekit import BerthError, BerthImageSpecBuilder

HERE = pathlib.Path(__file__).resolve().parent
PROJECT = HERE / "project"


def specs():
    root = str(PROJECT)
    base = ImageSpec(name="base", registry="ghcr.io/org", packages=["six==1.16.0"], env={"B": "1", "A": "2"})
    return {
        "no-copy member": ImageSpec(name="nc", source_root=root, source_copy_mode=CopyFileDetection.NO_COPY),
        "all member": ImageSpec(name="all", source_root=root, source_copy_mode=CopyFileDetection.ALL),
        "loaded modules": ImageSpec(name="lm", source_root=root, source_copy_mode=CopyFileDetection.LOADED_MODULES),
        "source root alone (LOADED_MODULES by flytekit)": ImageSpec(name="sr", source_root=root),
        "nested spec object": ImageSpec(name="app", registry="ghcr.io/org", base_image=base, tag_format="{spec_hash}-x"),
        "two levels": ImageSpec(name="top", base_image=ImageSpec(name="mid", base_image=base)),
        "odd values": ImageSpec(
            name="odd", env={"INF": math.inf, "NAN": math.nan, "BIG": 2**100, "F": 0.1, "T": True, "N": None},
            builder_options={"k": [1, [2, 3]], "nested": {"z": 1, "a": 2}},
        ),
        "pip secret tuples": ImageSpec(name="sec", pip_secret_mounts=[("a", "/b")], packages=["x"]),
    }


@pytest.mark.parametrize("label", list(specs()))
def test_plugin_name_equals_image_name(label, monkeypatch):
    monkeypatch.chdir(PROJECT)
    # LOADED_MODULES copies the project's modules this process imported: import one.
    monkeypatch.syspath_prepend(str(PROJECT))
    monkeypatch.setenv("BERTH_FLYTEKIT_REGISTRY", "ghcr.io/org")
    monkeypatch.setenv("BERTH_TEST_PYTHON_IMAGE", "x")
    monkeypatch.setenv("BERTH_TEST_UV_IMAGE", "x")
    import workflows.helpers  # noqa: F401

    spec = specs()[label]
    assert BerthImageSpecBuilder().image_name(spec) == spec.image_name()


def test_loaded_modules_changes_the_name_with_the_imported_files(monkeypatch):
    """The files LOADED_MODULES lists take part in the name, as in flytekit: importing another module renames."""
    monkeypatch.chdir(PROJECT)
    monkeypatch.syspath_prepend(str(PROJECT))
    builder = BerthImageSpecBuilder()
    for module in [m for m in sys.modules if m.startswith("workflows")]:
        monkeypatch.delitem(sys.modules, module)
    import workflows.helpers  # noqa: F401

    first = ImageSpec(name="lm", source_root=str(PROJECT), source_copy_mode=CopyFileDetection.LOADED_MODULES)
    before = builder.image_name(first)
    import workflows.__init__  # noqa: F401  (already imported as the package; nothing new)

    monkeypatch.setenv("BERTH_FLYTEKIT_REGISTRY", "ghcr.io/org")
    monkeypatch.setenv("BERTH_TEST_PYTHON_IMAGE", "x")
    monkeypatch.setenv("BERTH_TEST_UV_IMAGE", "x")
    import workflows.images  # noqa: F401

    second = ImageSpec(name="lm", source_root=str(PROJECT), source_copy_mode=CopyFileDetection.LOADED_MODULES)
    after = builder.image_name(second)
    assert after == second.image_name()
    assert after != before


def test_values_berth_cannot_reproduce_are_refused():
    spec = ImageSpec(name="p", registry="ghcr.io/org", env={"PATH_LIKE": pathlib.Path("/x")})
    with pytest.raises(BerthError, match=r"env: berth cannot take a PosixPath.*str\(path\)"):
        BerthImageSpecBuilder().image_name(spec)
    spec = ImageSpec(name="t", builder_options={"pair": (1, 2)})
    with pytest.raises(BerthError, match=r"builder_options: berth cannot take a tuple"):
        BerthImageSpecBuilder().image_name(spec)
