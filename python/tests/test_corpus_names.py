"""For every spec of tests/corpus loaded as a flytekit ImageSpec in Python, the name berth gives it through the
plugin equals flytekit's `image_name()`. The plugin itself refuses to go on when they differ; this runs that check
on each case and also compares the two names here.

Each case is loaded the way flytekit's YAML loader does (`ImageSpec(**yaml.safe_load(...))`) in a git-initialised
copy of its folder (as scripts/flytekit-corpus does), with the working directory in that copy, since flytekit
resolves `copy` entries against it; `source_root` and `requirements` are made absolute and a `{spec: file}` base
becomes a nested ImageSpec.
"""

import importlib.util
import os
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from flytekit.image_spec.image_spec import ImageSpec

from berth_flytekit import BerthImageSpecBuilder

CASES = REPO / "tests" / "corpus" / "cases"
CASE_NAMES = sorted(p.name for p in CASES.iterdir() if (p / "spec.yaml").is_file())


def corpus_tool():
    spec = importlib.util.spec_from_file_location("tags", REPO / "scripts" / "flytekit-corpus" / "tags.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load(path: Path, cwd: Path) -> ImageSpec:
    data = yaml.safe_load(path.read_text()) or {}
    folder = path.parent
    for key in ("source_root", "requirements"):
        if isinstance(data.get(key), str):
            data[key] = os.path.normpath(folder / data[key])
    if isinstance(data.get("copy"), list):
        data["copy"] = [os.path.relpath(folder / c, cwd) for c in data["copy"]]
    if isinstance(data.get("pip_secret_mounts"), list):
        data["pip_secret_mounts"] = [tuple(m) for m in data["pip_secret_mounts"]]
    if isinstance(data.get("base_image"), dict):
        data["base_image"] = load(folder / data["base_image"]["spec"], cwd)
    return ImageSpec(**data)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    saved = dict(os.environ)
    tool = corpus_tool()
    folder = tmp_path_factory.mktemp("corpus")
    tool.isolate_git_environment(str(folder))
    yield tool, folder
    os.environ.clear()
    os.environ.update(saved)


def test_the_corpus_is_there():
    assert len(CASE_NAMES) >= 50, CASE_NAMES


@pytest.mark.parametrize("case", CASE_NAMES)
def test_plugin_name_equals_image_name(case, scratch, monkeypatch):
    tool, folder = scratch
    work = Path(tool.isolated_copy(str(CASES / case), str(folder)))
    monkeypatch.chdir(work)
    spec = load(work / "spec.yaml", work)
    if "builder" not in (yaml.safe_load((work / "spec.yaml").read_text()) or {}):
        assert spec.builder == "berth", "the plugin is not the default builder"
    assert BerthImageSpecBuilder().image_name(spec) == spec.image_name()
