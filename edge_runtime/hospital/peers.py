"""Where the box sends and asks: a DICOM peer written ``AE@HOST:PORT`` (the PACS, the Modality Worklist), or a
DICOMweb service's root URL, checked once with a message naming what is wrong."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from edge_runtime.errors import ConfigError

PEER = re.compile(r"^(?P<ae>[ -~]{1,16})@(?P<host>[A-Za-z0-9.\-_:\[\]]+):(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class Peer:
    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Peer:
        """``AE@HOST:PORT``, e.g. ``ORTHANC@10.0.0.5:4242``."""
        match = PEER.match(text.strip())
        if match is None or not 0 < int(match["port"]) < 65536:
            raise ConfigError(f"{text!r} is not a DICOM peer AE@HOST:PORT (e.g. PACS@10.0.0.5:104)")
        return cls(match["ae"], match["host"].strip("[]"), int(match["port"]))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def checked_url(url: str) -> str:
    """A DICOMweb root as configured: http or https with a host; ValueError naming what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not a DICOMweb service URL, http(s)://HOST[:PORT]/PATH (e.g. http://pacs:8042/dicom-web): "
                         f"{url!r}")  # fmt: skip
    return url.rstrip("/")
