"""pyflyte builds a small Flyte project's images through berth on every engine of scripts/env.

The project (tests/project) has two tasks with different ImageSpecs, the second built on the first's spec and
copying a data file, both importing a local module that LOADED_MODULES copies. The engine is chosen with
BERTH_ENGINE alone; pyflyte runs with a clean environment, as root or as the rootless Podman user.
"""

import re
import tarfile

import pytest
from conftest import ENGINES, project_copy, run_pyflyte
from registry import Registry

BUILDING = re.compile(r"Image (\S+) not found\. Building it with berth")
PUSHED = re.compile(r"Image (\S+)@(sha256:[0-9a-f]{64}) pushed\.")
FOUND = re.compile(r"Image (\S+) found\. Skip building\.")


def registry_of(env) -> Registry:
    return Registry(env.registry, env.user, env.password)


def pyflyte_env(env, engine: str, registry_path: str, password: str = None) -> dict:
    return {
        "BERTH_ENGINE": engine,
        "BERTH_FLYTEKIT_REGISTRY": registry_path,
        "BERTH_TEST_PYTHON_IMAGE": env.python_image,
        "BERTH_TEST_UV_IMAGE": env.uv_image,
        "BERTH_REGISTRY_USERNAME": env.user,
        "BERTH_REGISTRY_PASSWORD": password or env.password,
    }


def task_images(package) -> dict:
    """Task name -> container image, from the task templates of a `pyflyte package` archive."""
    from flyteidl.admin.task_pb2 import TaskSpec

    images = {}
    with tarfile.open(package) as tar:
        for member in tar.getmembers():
            # flytekit names each entity file N_<name>_<resource type>.pb; 1 is a task (2 workflow, 3 launch plan).
            if not member.name.endswith("_1.pb"):
                continue
            spec = TaskSpec()
            spec.ParseFromString(tar.extractfile(member).read())
            if spec.HasField("template") and spec.template.HasField("container"):
                images[spec.template.id.name] = spec.template.container.image
    return images


@pytest.mark.parametrize("test_id,engine,rootless", ENGINES, ids=[e[0] for e in ENGINES])
def test_pyflyte_build_then_nothing_then_package(env, test_id, engine, rootless):
    user = env.rootless_user if rootless else None
    project = project_copy(owner=user)
    registry_path = f"{env.registry}/berth-flytekit-{env.run_id}-{test_id}"
    extra = pyflyte_env(env, engine, registry_path)
    registry = registry_of(env)

    code, out = run_pyflyte(["build", "workflows/wf.py", "pipeline"], project, extra, as_user=user)
    assert code == 0, out
    building = BUILDING.findall(out)
    pushed = dict(PUSHED.findall(out))
    assert sorted(n.split("/")[-1].split(":")[0] for n in building) == ["fk-app", "fk-base"], out
    assert sorted(pushed) == sorted(building), out
    assert f"engine: {engine} (from BERTH_ENGINE)" in out
    for name, digest in pushed.items():
        assert name.startswith(registry_path + "/"), name
        assert registry.digest(name) == digest, f"{name} is not in the registry with the digest berth printed"
    base = next(n for n in pushed if "/fk-base:" in n)
    app = next(n for n in pushed if "/fk-app:" in n)
    # LOADED_MODULES copied the modules pyflyte imported (as flytekit's default builder would); `copy` the data.
    base_files = registry.files_in_small_layers(base)
    app_files = registry.files_in_small_layers(app)
    for module in ("root/workflows/helpers.py", "root/workflows/wf.py"):
        assert module in base_files, base_files
        assert module in app_files, app_files
    assert "root/data/motd.txt" in app_files, app_files
    assert "root/data/motd.txt" not in base_files, base_files

    code, out = run_pyflyte(["build", "workflows/wf.py", "pipeline"], project, extra, as_user=user)
    assert code == 0, out
    assert BUILDING.findall(out) == [], f"the second run built again:\n{out}"
    assert sorted(FOUND.findall(out)) == sorted(pushed), out

    if test_id == "docker":
        # flytekit's force push (ImageSpec.force_push(), or FLYTE_FORCE_PUSH_IMAGE_SPEC for every spec) builds anyway.
        forced = dict(extra, FLYTE_FORCE_PUSH_IMAGE_SPEC="true")
        code, out = run_pyflyte(["build", "workflows/wf.py", "pipeline"], project, forced, as_user=user)
        assert code == 0, out
        assert len(re.findall(r"found; force push: building it again with berth", out)) == 2, out
        assert sorted(n for n, _ in PUSHED.findall(out)) == sorted(pushed), out
        pushed = dict(PUSHED.findall(out))  # the same content, but a rebuild may give another digest

    package = project / "flyte-package.tgz"
    code, out = run_pyflyte(["--pkgs", "workflows", "package", "--output", str(package)], project, extra, as_user=user)
    assert code == 0, out
    assert BUILDING.findall(out) == [], f"pyflyte package built again:\n{out}"
    images = task_images(package)
    assert images == {
        "workflows.wf.prepare": f"{base}@{pushed[base]}",
        "workflows.wf.report": f"{app}@{pushed[app]}",
    }


def test_refused_credentials_fail_with_berths_hint_and_push_nothing(env):
    project = project_copy()
    registry_path = f"{env.registry}/berth-flytekit-{env.run_id}-refused"
    extra = pyflyte_env(env, "docker", registry_path, password="not-the-password")

    code, out = run_pyflyte(["build", "workflows/wf.py", "pipeline"], project, extra)
    assert code != 0, out
    assert "BerthImageBuildError" in out, out
    assert "berth could not check the image of ImageSpec 'fk-base'" in out, out
    # the refused credentials came from BERTH_REGISTRY_*: the hint says so, and how to use a stored login instead
    assert "hint: the credentials come from BERTH_REGISTRY_USERNAME" in out, out
    assert "`berth login 127.0.0.1:5000`" in out, out
    assert "assumes the image" not in out and "CalledProcessError" not in out, out
    registry = registry_of(env)
    for repo in ("fk-base", "fk-app"):
        assert registry.tags(f"{registry_path.split('/', 1)[1]}/{repo}") == [], f"{repo} was pushed"
