"""An ImageSpec as berth reads it: the dataclass fields exactly as flytekit holds them, as JSON.

berth computes the tag from these values the way flytekit does (Python's ``str()`` of the fields), so they travel
with their Python types; JSON keeps str, int, float, bool, None, list and dict (in insertion order). An enum member
(``source_copy_mode``) goes as ``{"$enum", "$member", "$value"}`` and is hashed as its repr, and a float JSON
cannot hold as ``{"$float": "inf"}``, an int beyond 64 bits as ``{"$int": "123..."}``. Any other type is refused
rather than approximated, since its repr could not be reproduced.
"""

import dataclasses
import enum
import math
from typing import Any, Callable, List, Optional

from flytekit.constants import CopyFileDetection
from flytekit.image_spec.image_spec import ImageSpec


class UnsupportedValue(ValueError):
    """A field holds a value berth cannot reproduce flytekit's hash of."""


def encode(value: Any, where: str) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return {"$float": repr(value)}
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return {"$int": str(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return {"$enum": type(value).__name__, "$member": value.name, "$value": encode(value.value, where)}
    if isinstance(value, list) or (isinstance(value, tuple) and where.endswith(": pip_secret_mounts")):
        # pip_secret_mounts holds tuples, and is left out of the hash; elsewhere a tuple's repr has no JSON form.
        return [encode(v, where) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise UnsupportedValue(f"{where}: keys must be text, found {type(k).__name__} {k!r}")
            out[k] = encode(v, where)
        return out
    raise UnsupportedValue(
        f"{where}: berth cannot take a {type(value).__name__} ({value!r}); use text, numbers, lists or dicts"
        + (" (str(path) for a path)" if hasattr(value, "__fspath__") else "")
    )


def payload(spec: ImageSpec, base_name: Callable[[ImageSpec], str]) -> dict:
    """What ``berth flytekit`` reads: the fields, with a base ImageSpec replaced by its image name as flytekit's
    tag replaces it (``base_name`` computes and checks it), and the files LOADED_MODULES copies."""
    fields = {}
    for field in dataclasses.fields(ImageSpec):
        value = getattr(spec, field.name)
        if field.name == "base_image" and isinstance(value, ImageSpec):
            value = base_name(value)
        fields[field.name] = encode(value, f"ImageSpec {spec.name}: {field.name}")
    return {"fields": fields, "source_files": loaded_module_files(spec)}


def loaded_module_files(spec: ImageSpec) -> Optional[List[str]]:
    """For LOADED_MODULES, the files flytekit's default builder would copy: its own ``ls_files`` in this process
    (the one that imported the modules), with the same ignores."""
    if spec.source_copy_mode != CopyFileDetection.LOADED_MODULES or not spec.source_root:
        return None
    from flytekit.tools.ignore import DockerIgnore, GitIgnore, IgnoreGroup, StandardIgnore
    from flytekit.tools.script_mode import ls_files

    ignore = IgnoreGroup(spec.source_root, [GitIgnore, DockerIgnore, StandardIgnore])
    files, _ = ls_files(str(spec.source_root), spec.source_copy_mode, deref_symlinks=False, ignore_group=ignore)
    return list(files)


def flytekit_name(spec: ImageSpec) -> str:
    """``image_spec.image_name()`` as flytekit computes it, before any builder's digest-pinned name replaces it."""
    name = f"{spec.name}:{spec.tag}"
    return f"{spec.registry}/{name}" if spec.registry else name
