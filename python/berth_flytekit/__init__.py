"""berth's image builder for flytekit.

flytekit imports this module through the ``flytekit.plugins`` entry point when it starts, so installing the
``berth`` package is enough: the builder named ``berth`` is registered with a priority above flytekit's default
builder, and every ``ImageSpec`` that names no builder is built by berth (``builder="default"`` still picks
flytekit's). The work is done by the ``berth`` binary from the same wheel (``berth flytekit ...``); see
``_builder.py`` for what happens when.
"""

from flytekit.image_spec.image_spec import ImageBuildEngine

from ._builder import BerthImageSpecBuilder, BerthError

#: flytekit's default builder registers with priority 1 and the no-op builder with 0; ImageSpec picks the highest.
PRIORITY = 2

ImageBuildEngine.register(BerthImageSpecBuilder.builder_type, BerthImageSpecBuilder(), priority=PRIORITY)

__all__ = ["BerthImageSpecBuilder", "BerthError", "PRIORITY"]
