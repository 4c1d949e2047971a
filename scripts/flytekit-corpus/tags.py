#!/usr/bin/env python3
"""Compute image tags with the real flytekit for berth's YAML image specs.

Two modes:

  tags.py --cases tests/corpus/cases --out tests/corpus/expected.tsv
      Regenerate the corpus expectations.  For every case folder (sorted by
      name) the folder is copied with `cp -a` into a fresh temporary
      directory, `git init -q` is run inside the copy (nothing is added or
      committed, so every file is untracked and `git ls-files -io
      --exclude-standard` reports all ignored files), and the tag is computed
      on that copy.  One line per case is written:

          <case_dir_name> TAB <spec.image_name()> TAB <spec.id>

      `spec.id` is `-` when the repr hashed for the id contains an absolute
      path of the temporary copy (source_root / requirements / copy entries of
      the spec or of a nested base spec), i.e. when it is not reproducible.

  tags.py --specs a.yaml b.yaml ...
      Print `spec.image_name()` for each spec file, one per line, computed in
      place (no copy, no `git init`; .gitignore handling then depends on the
      git repository the files live in).  `--isolate` makes it copy the
      spec's folder and `git init` like the corpus mode; `--with-id` appends
      a TAB and the id.

Spec loading mirrors flytekit's own YAML loader
(flytekit.configuration.Image.look_up_image_info: `yaml.safe_load` then
`ImageSpec(**dict)`), plus berth's conventions:

  * `source_root`, `requirements` and each `copy` entry are resolved against
    the folder of the spec file to absolute paths;
  * `base_image: {spec: other.yaml}` loads other.yaml (relative to the spec
    file, recursively) into an ImageSpec object used as base_image;
  * `pip_secret_mounts: [[src, dst], ...]` entries become tuples.

All other values are passed through unchanged (e.g. `source_copy_mode: 2`
stays the int 2, exactly as flytekit's YAML loader would do).
"""

import argparse
import base64
import dataclasses
import hashlib
import os
import re
import subprocess
import sys
import tempfile

FLYTEKIT_VERSION = "1.16.31"
CASE_NAME_RE = re.compile(r"^[0-9]{2,}-[a-z0-9][a-z0-9-]*$")
EXCLUDED_FROM_ID = ("pip_secret_mounts", "builder", "runtime_packages")


class SpecError(Exception):
    pass


def isolate_git_environment(scratch):
    """Make git's ignore handling independent of the caller's configuration.

    flytekit runs `git ls-files -io --exclude-standard`, which honours the
    global/system config (core.excludesFile, core.quotePath, ...) and the
    default global excludes file ($XDG_CONFIG_HOME/git/ignore).
    """
    for key in list(os.environ):
        if key.startswith("GIT_"):
            del os.environ[key]
    os.environ["GIT_CONFIG_NOSYSTEM"] = "1"
    os.environ["GIT_CONFIG_GLOBAL"] = os.devnull
    xdg = os.path.join(scratch, "xdg-config")
    os.makedirs(xdg, exist_ok=True)
    os.environ["XDG_CONFIG_HOME"] = xdg


def _resolve(base_dir, value):
    if isinstance(value, str):
        return os.path.normpath(os.path.join(base_dir, value))
    return value


def load_spec(path, _stack=()):
    """Load a berth YAML spec into a flytekit ImageSpec."""
    import yaml
    from flytekit.image_spec.image_spec import ImageSpec

    path = os.path.abspath(path)
    if path in _stack:
        raise SpecError(f"base_image spec cycle: {' -> '.join(_stack + (path,))}")
    with open(path, "r", encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    base_dir = os.path.dirname(path)

    for key in ("source_root", "requirements"):
        if key in data:
            data[key] = _resolve(base_dir, data[key])
    if isinstance(data.get("copy"), list):
        data["copy"] = [_resolve(base_dir, c) for c in data["copy"]]
    if isinstance(data.get("pip_secret_mounts"), list):
        data["pip_secret_mounts"] = [tuple(m) if isinstance(m, list) else m for m in data["pip_secret_mounts"]]
    base = data.get("base_image")
    if isinstance(base, dict):
        if set(base) != {"spec"} or not isinstance(base["spec"], str):
            raise SpecError(f"{path}: base_image mapping must be exactly {{spec: <path>}}, got {base!r}")
        data["base_image"] = load_spec(os.path.join(base_dir, base["spec"]), _stack + (path,))

    return ImageSpec(**data)


def id_repr(spec):
    """The exact string flytekit md5-hashes for ImageSpec.id (same code as flytekit)."""
    d = dataclasses.asdict(
        spec, dict_factory=lambda x: {k: v for (k, v) in x if v is not None and k not in EXCLUDED_FROM_ID}
    )
    return d.__str__()


def compute(spec_path, unreproducible_prefix=None):
    """Return (image_name, id) for a spec file; id is '-' if it embeds unreproducible_prefix."""
    spec = load_spec(spec_path)
    image_name = spec.image_name()
    spec_id = spec.id
    text = id_repr(spec)
    check = base64.urlsafe_b64encode(hashlib.md5(text.encode("utf-8")).digest()).decode("ascii").rstrip("=")
    if check != spec_id:
        raise SpecError(f"{spec_path}: id re-computation mismatch ({check} != {spec_id}); flytekit changed?")
    if unreproducible_prefix is not None and unreproducible_prefix in text:
        spec_id = "-"
    return image_name, spec_id


def isolated_copy(src_dir, scratch):
    """cp -a the folder into a fresh temp dir and `git init -q` inside the copy."""
    parent = tempfile.mkdtemp(dir=scratch)
    dst = os.path.join(parent, os.path.basename(os.path.normpath(src_dir)))
    subprocess.run(["cp", "-a", src_dir, dst], check=True)
    subprocess.run(["git", "-c", "init.defaultBranch=main", "init", "-q"], cwd=dst, check=True)
    return dst


def run_cases(cases_dir, out_path, scratch):
    cases = sorted(
        name for name in os.listdir(cases_dir) if os.path.isfile(os.path.join(cases_dir, name, "spec.yaml"))
    )
    if not cases:
        raise SpecError(f"no cases (*/spec.yaml) found in {cases_dir}")
    stray = sorted(
        n for n in os.listdir(cases_dir) if n not in cases and not n.startswith(".")
    )
    if stray:
        raise SpecError(f"entries without spec.yaml in {cases_dir}: {stray}")
    lines, failures = [], []
    isolate_git_environment(scratch)
    for case in cases:
        if not CASE_NAME_RE.match(case):
            failures.append((case, f"bad case folder name (want NN-slug): {case!r}"))
            continue
        try:
            work = isolated_copy(os.path.join(cases_dir, case), scratch)
            image_name, spec_id = compute(os.path.join(work, "spec.yaml"), unreproducible_prefix=scratch)
        except Exception as e:  # noqa: BLE001 - report every failing case, then fail
            failures.append((case, f"{type(e).__name__}: {e}"))
            continue
        for field in (image_name, spec_id):
            if "\t" in field or "\n" in field:
                failures.append((case, f"tab/newline in output field {field!r}"))
        lines.append(f"{case}\t{image_name}\t{spec_id}\n")
    if failures:
        for case, msg in failures:
            print(f"FAILED {case}: {msg}", file=sys.stderr)
        raise SystemExit(f"{len(failures)} case(s) failed; {out_path} not written")
    tmp_out = out_path + ".tmp"
    with open(tmp_out, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(lines)
    os.replace(tmp_out, out_path)
    print(f"wrote {len(lines)} cases to {out_path}", file=sys.stderr)


def run_specs(specs, isolate, with_id, scratch):
    if isolate:
        isolate_git_environment(scratch)
    for spec_path in specs:
        path = spec_path
        if isolate:
            spec_dir = os.path.dirname(os.path.abspath(spec_path))
            path = os.path.join(isolated_copy(spec_dir, scratch), os.path.basename(spec_path))
        image_name, spec_id = compute(path, unreproducible_prefix=scratch if isolate else None)
        print(f"{image_name}\t{spec_id}" if with_id else image_name, flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--cases", metavar="DIR", help="corpus cases directory (each subfolder has spec.yaml)")
    mode.add_argument("--specs", metavar="SPEC", nargs="+", help="print image_name for each spec file")
    p.add_argument("--out", metavar="TSV", help="output file for --cases (default: DIR/../expected.tsv)")
    p.add_argument("--isolate", action="store_true", help="--specs: copy + git init like the corpus does")
    p.add_argument("--with-id", action="store_true", help="--specs: also print TAB id")
    p.add_argument(
        "--any-flytekit-version", action="store_true", help=f"do not insist on flytekit=={FLYTEKIT_VERSION}"
    )
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="berth-flytekit-corpus-") as scratch:
        # flytekit creates (and never removes) temp dirs on import: keep them inside our scratch dir
        flytekit_tmp = os.path.join(scratch, "flytekit-tmp")
        os.mkdir(flytekit_tmp)
        os.environ["TMPDIR"] = flytekit_tmp
        tempfile.tempdir = flytekit_tmp

        import flytekit

        if flytekit.__version__ != FLYTEKIT_VERSION and not args.any_flytekit_version:
            raise SystemExit(f"flytekit {flytekit.__version__} found, expected {FLYTEKIT_VERSION}")

        if args.cases:
            cases_dir = os.path.abspath(args.cases)
            out = args.out or os.path.join(os.path.dirname(cases_dir), "expected.tsv")
            run_cases(cases_dir, os.path.abspath(out), scratch)
        else:
            run_specs(args.specs, args.isolate, args.with_id, scratch)


if __name__ == "__main__":
    main()
