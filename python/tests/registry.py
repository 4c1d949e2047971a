"""Asking the test registry (plain HTTP, basic auth) what is there, independently of berth."""

import gzip
import io
import json
import tarfile
from typing import List, Optional

import requests

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


class Registry:
    def __init__(self, host: str, user: str, password: str):
        self.base = f"http://{host}/v2"
        self.auth = (user, password)

    def digest(self, image: str) -> Optional[str]:
        """The manifest digest of HOST/REPO:TAG, or None if the registry has no such tag."""
        repo, tag = split(image)
        r = requests.head(f"{self.base}/{repo}/manifests/{tag}", auth=self.auth, headers={"Accept": MANIFEST_TYPES})
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.headers["Docker-Content-Digest"]

    def tags(self, repo: str) -> List[str]:
        r = requests.get(f"{self.base}/{repo}/tags/list", auth=self.auth)
        if r.status_code == 404:
            return []
        r.raise_for_status()
        return r.json().get("tags") or []

    def files_in_small_layers(self, image: str, limit: int = 1 << 20) -> List[str]:
        """Paths in the image's layers smaller than `limit` (the COPY layers; the base's big ones are skipped)."""
        repo, tag = split(image)
        r = requests.get(f"{self.base}/{repo}/manifests/{tag}", auth=self.auth, headers={"Accept": MANIFEST_TYPES})
        r.raise_for_status()
        names = []
        for layer in json.loads(r.content)["layers"]:
            if layer["size"] >= limit:
                continue
            blob = requests.get(f"{self.base}/{repo}/blobs/{layer['digest']}", auth=self.auth)
            blob.raise_for_status()
            data = blob.content
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                names.extend(m.name.lstrip("./") for m in tar.getmembers())
        return names


def split(image: str):
    """HOST/REPO:TAG -> (REPO, TAG); an @digest suffix is dropped."""
    image = image.split("@", 1)[0]
    _, rest = image.split("/", 1)
    repo, tag = rest.rsplit(":", 1)
    return repo, tag
