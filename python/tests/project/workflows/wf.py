from flytekit import task, workflow

from workflows.helpers import greeting
from workflows.images import app_image, base_image


@task(container_image=base_image)
def prepare(name: str) -> str:
    return greeting(name)


@task(container_image=app_image)
def report(text: str) -> str:
    return text.upper()


@workflow
def pipeline(name: str = "berth") -> str:
    return report(text=prepare(name=name))
