"""The ``berth`` ImageSpecBuilder.

flytekit's ``ImageBuildEngine.build`` builds a base ImageSpec first (once per process), then asks the builder
``should_build`` and, if so, ``build_image``. Here both ask the ``berth`` binary about the spec as flytekit holds
it, and stop whenever berth's image name differs from ``image_spec.image_name()``: pushing under a name flytekit
will not look for would register tasks on an image nobody built.

- ``should_build``: berth asks the registry (no daemon). Present: skip, and pin the name to the digest the
  registry has; absent: build; could not tell: raise with berth's message and hint, never assume.
  ``ImageSpec.force_push()`` builds anyway.
- ``build_image``: berth builds and pushes on its usual engine (BERTH_ENGINE, berth.yaml, the user file,
  detection), showing its progress on this terminal, and the result is ``name:tag@sha256:...``.

Pinning existing images too keeps names stable across runs: a spec built on another spec hashes its base's name,
which flytekit takes from ``image_name()``, pinned or not; were only freshly built bases pinned, the second run
would name (and build) every derived image again.
"""

import click
from flytekit.exceptions.user import FlyteUserException
from flytekit.image_spec.image_spec import ImageBuildEngine, ImageSpec, ImageSpecBuilder

from . import _spec
from ._binary import run_berth


class BerthError(FlyteUserException):
    """berth could not name, check or build an image; the message is berth's, with its hint."""

    _ERROR_CODE = "USER:BerthImageBuildError"


def _raise(action: str, spec: ImageSpec, error: dict) -> None:
    message = error.get("message") or "berth failed without a message"
    hint = error.get("hint")
    text = f"berth could not {action} the image of ImageSpec {spec.name!r}: {message}"
    if hint:
        text += f"\n  hint: {hint}"
    raise BerthError(text)


class BerthImageSpecBuilder(ImageSpecBuilder):
    """Builds ImageSpecs with berth; registered as ``berth`` by this package's flytekit plugin entry point."""

    builder_type = "berth"

    def _ask(self, action: str, spec: ImageSpec, force: bool = False) -> dict:
        try:
            payload = _spec.payload(spec, self.image_name)
        except _spec.UnsupportedValue as e:
            raise BerthError(f"berth cannot build ImageSpec {spec.name!r}: {e}") from None
        answer = run_berth(action, payload, force)
        if answer.error:
            verb = {"name": "name", "exists": "check", "build": "build"}[action]
            _raise(verb, spec, answer.error)
        self._check_name(spec, answer.data.get("image"))
        return answer.data

    @staticmethod
    def _check_name(spec: ImageSpec, berth_name) -> None:
        flytekit_name = _spec.flytekit_name(spec)
        if berth_name != flytekit_name:
            raise BerthError(
                f"berth and flytekit name ImageSpec {spec.name!r} differently; nothing was built or pushed.\n"
                f"  flytekit: {flytekit_name}\n"
                f"  berth:    {berth_name}\n"
                "  hint: report this to berth with the ImageSpec; meanwhile use builder=\"default\" for it"
            )

    def image_name(self, spec: ImageSpec) -> str:
        """The name berth gives ``spec`` (checked to equal flytekit's), as flytekit's ``image_name()`` returns it:
        with a digest if an image was already built or found for it in this process."""
        self._ask("name", spec)
        return spec.image_name()

    def should_build(self, image_spec: ImageSpec) -> bool:
        answer = self._ask("exists", image_spec)
        name = answer["image"]
        if answer.get("status") == "present":
            ImageBuildEngine._IMAGE_NAME_TO_REAL_NAME[name] = f"{name}@{answer['digest']}"
            if image_spec._is_force_push:
                click.secho(f"Image {name} found; force push: building it again with berth.", fg="blue")
                return True
            click.secho(f"Image {name} found. Skip building.", fg="blue")
            return False
        click.secho(f"Image {name} not found. Building it with berth...", fg="blue")
        return True

    def build_image(self, image_spec: ImageSpec) -> str:
        answer = self._ask("build", image_spec, force=image_spec._is_force_push)
        reference = answer["reference"]
        click.secho(f"Image {reference} {answer.get('status', 'built')}.", fg="blue")
        return reference
