"""A local module the tasks import: LOADED_MODULES copies it into the images pyflyte packages."""


def greeting(name: str) -> str:
    return f"hello {name}"
