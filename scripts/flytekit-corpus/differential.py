#!/usr/bin/env python3
"""berth's names against the real flytekit's for specs generated over every ImageSpec field, with a fixed seed.

    differential.py --berth target/debug/berth [--count 1000] [--seed 1]

Run with the flytekit venv's python (scripts/flytekit-corpus/regen.sh makes it). Each spec is written as YAML into
its own folder (beside a requirements file, a source folder and a base spec it may name), loaded by flytekit as
flytekit's YAML loader does (tags.py), and named by `berth name`. Every spec must get the same name from both,
or be refused by berth for a reason on the documented list below (README, "What berth adds or decides
differently"), or be refused by both. Prints one line per disagreement, a summary, and the closing line
`N passed, M failed`; exits 1 on any disagreement.
"""

import argparse
import os
import random
import shutil
import string
import subprocess
import sys
import tempfile

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tags  # noqa: E402

# berth refuses these on purpose (README, "What berth adds or decides differently"); a refusal must match one.
DOCUMENTED_REFUSALS = {
    "a value of the wrong kind for its field (flytekit hashes it; the build would fail)":
        ("expected text", "expected a list", "expected a mapping", "expected an image reference",
         "expected a whole number", "expected true or false"),
    "a name, registry or base image that is not a valid image reference": ("is not a valid",),
    "source_root without source_copy_mode 2, or another copy mode": ("source_copy_mode",),
    "a copy entry that is absolute or leaves the spec's folder": ("`copy`",),
}

WORDS = ["numpy", "six==1.16.0", "requests>=2", "pandas", "torch", "git", "curl", "jq", "bioconda", "conda-forge",
         "scikit-learn", "a", "Flyte", "x_y", "p.q", "üñí", "with space"]


def word(rng):
    if rng.random() < 0.1:
        return "".join(rng.choice(string.ascii_letters + string.digits + "-_.") for _ in range(rng.randint(1, 12)))
    return rng.choice(WORDS)


def scalar(rng):
    return rng.choice([
        word(rng), rng.randint(-10**12, 10**12), rng.random() * 100, True, False, None, "",
        "3.11", "yes", "0x1F", "017", "a\nb",
    ])


def value_for(field, rng):
    """A value of the kind flytekit's field takes, now and then something else."""
    if rng.random() < 0.15:
        return scalar(rng) if rng.random() < 0.6 else [scalar(rng) for _ in range(rng.randint(0, 3))]
    words = lambda: [word(rng) for _ in range(rng.randint(0, 4))]  # noqa: E731
    if field in ("packages", "conda_packages", "conda_channels", "apt_packages", "runtime_packages", "entrypoint",
                 "commands", "pip_extra_index_url"):
        return words()
    if field == "copy":
        return rng.choice([["src"], ["requirements.txt"], ["src", "requirements.txt"], []])
    if field in ("env", "builder_options", "builder_config"):
        return {rng.choice(["A", "LOG_LEVEL", "uv_image", "install_flytekit", "N"]): scalar(rng)
                for _ in range(rng.randint(0, 3))}
    if field == "python_version":
        return rng.choice(["3.10", "3.11", "3.12", "3.9"])
    if field == "source_copy_mode":
        return 2
    if field == "requirements":
        return "requirements.txt"
    if field == "source_root":
        return "src"
    if field == "base_image":
        return rng.choice(["python:3.11-slim", "127.0.0.1:5000/fixtures/busybox:1", {"spec": "base.yaml"}])
    if field == "pip_secret_mounts":
        return [["requirements.txt", "/run/secrets/pip"]]
    if field == "tag_format":
        return rng.choice(["{spec_hash}-dev", "v1-{spec_hash}", "{spec_hash}"])
    if field == "platform":
        return rng.choice(["linux/amd64", "linux/arm64", "linux/amd64,linux/arm64"])
    if field == "registry":
        return rng.choice(["ghcr.io/team", "127.0.0.1:5000/team", "localhost:30000", "Reg.Example/Team"])
    if field == "python_exec":
        return "/usr/bin/python3"
    if field == "cuda" or field == "cudnn":
        return rng.choice(["12.1", "11.8", 12])
    return word(rng)


FIELDS = ["name", "python_version", "builder", "source_root", "env", "registry", "packages", "conda_packages",
          "conda_channels", "requirements", "apt_packages", "cuda", "cudnn", "base_image", "platform", "pip_index",
          "pip_extra_index_url", "pip_secret_mounts", "pip_extra_args", "entrypoint", "commands", "tag_format",
          "source_copy_mode", "copy", "python_exec", "builder_options", "builder_config", "runtime_packages"]


def generate(rng):
    spec = {field: value_for(field, rng) for field in rng.sample(FIELDS, rng.randint(0, 10))}
    if "copy" in spec and rng.random() < 0.7:  # flytekit wants a source_root beside copy
        spec["source_root"] = "src"
    if "source_root" in spec and rng.random() < 0.8:
        spec["source_copy_mode"] = 2
    return spec


def write_case(folder, spec):
    os.makedirs(os.path.join(folder, "src"))
    with open(os.path.join(folder, "src", "app.py"), "w") as f:
        f.write("print('hi')\n")
    with open(os.path.join(folder, "requirements.txt"), "w") as f:
        f.write("six==1.16.0\n")
    with open(os.path.join(folder, "base.yaml"), "w") as f:
        f.write("name: base\npackages: [numpy]\n")
    path = os.path.join(folder, "spec.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(spec, f, allow_unicode=True)
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    return path


def flytekit_name(path):
    try:
        return tags.load_spec(path).image_name(), None
    except Exception as e:  # noqa: BLE001 - any refusal is an answer
        return None, f"{type(e).__name__}: {e}"


def berth_name(berth, path):
    run = subprocess.run([berth, "name", path], capture_output=True, text=True)
    if run.returncode == 0:
        return run.stdout.strip(), None
    return None, run.stderr.strip()


def documented(reason):
    """The documented reason a berth refusal matches, if any."""
    for why, needles in DOCUMENTED_REFUSALS.items():
        if any(needle in reason for needle in needles):
            return why
    return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--berth", required=True)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    rng = random.Random(args.seed)
    scratch = tempfile.mkdtemp(prefix="berth-differential-")
    tags.isolate_git_environment(scratch)
    counts = {"same name": 0, "both refused": 0}
    failed = 0
    for n in range(args.count):
        spec = generate(rng)
        path = write_case(os.path.join(scratch, f"case-{n:04d}"), spec)
        expected, flytekit_error = flytekit_name(path)
        got, berth_error = berth_name(args.berth, path)
        if got is not None and got == expected:
            counts["same name"] += 1
        elif got is None and expected is None:
            counts["both refused"] += 1
            why = f"  flytekit refused with {flytekit_error.split(':')[0]}"
            counts[why] = counts.get(why, 0) + 1
        elif got is None and documented(berth_error):
            why = f"berth refused: {documented(berth_error)}"
            counts[why] = counts.get(why, 0) + 1
        else:
            failed += 1
            print(f"case {n} ({path}): flytekit {expected or flytekit_error!r}, berth {got or berth_error!r}")
    shutil.rmtree(scratch, ignore_errors=True)
    for what, count in counts.items():
        print(f"{what}: {count}")
    print(f"{args.count - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
