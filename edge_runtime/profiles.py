"""Scanner profiles: where the B-mode image sits on each scanner's screen.

A frame grabber sees the whole scanner screen (text, depth scale, logo). The model must only ever see the
B-mode region, and that region differs by vendor, model and preset, so it is data, not code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from edge_runtime.errors import FattyLiverError


class ProfileError(FattyLiverError):
    """A scanner profile is unknown or malformed, or a frame does not fit it."""


@dataclass(frozen=True)
class ScannerProfile:
    name: str
    vendor: str
    screen_width: int
    screen_height: int
    crop_x: int
    crop_y: int
    crop_width: int
    crop_height: int

    @property
    def screen_size(self) -> tuple[int, int]:
        return self.screen_width, self.screen_height

    @property
    def crop_box(self) -> tuple[int, int, int, int]:
        return self.crop_x, self.crop_y, self.crop_width, self.crop_height

    @classmethod
    def from_mapping(cls, name: str, data: Mapping[str, Any]) -> ScannerProfile:
        try:
            screen_w, screen_h = (int(v) for v in data["screen"])
            x, y, w, h = (int(v) for v in data["crop"])
            vendor = str(data["vendor"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(
                f"scanner profile {name!r} needs 'vendor', 'screen' [w, h] and 'crop' [x, y, w, h]: {exc}"
            ) from exc
        profile = cls(name, vendor, screen_w, screen_h, x, y, w, h)
        profile._check()
        return profile

    def _check(self) -> None:
        if self.screen_width <= 0 or self.screen_height <= 0:
            raise ProfileError(f"scanner profile {self.name!r}: screen size must be positive")
        if self.crop_width < 16 or self.crop_height < 16:
            raise ProfileError(f"scanner profile {self.name!r}: crop box {self.crop_box} is too small")
        if (
            self.crop_x < 0
            or self.crop_y < 0
            or self.crop_x + self.crop_width > self.screen_width
            or self.crop_y + self.crop_height > self.screen_height
        ):
            raise ProfileError(
                f"scanner profile {self.name!r}: crop box {self.crop_box} lies outside the "
                f"{self.screen_width}x{self.screen_height} screen"
            )

    def to_mapping(self) -> dict[str, Any]:
        return {
            "vendor": self.vendor,
            "screen": [self.screen_width, self.screen_height],
            "crop": list(self.crop_box),
        }


def _parse(data: Mapping[str, Any]) -> dict[str, ScannerProfile]:
    return {name: ScannerProfile.from_mapping(name, spec) for name, spec in data.items() if not name.startswith("_")}


def default_profiles() -> dict[str, ScannerProfile]:
    """The profiles of the phantom's PHILIPS-like and GE-like screens, shipped with the package."""
    text = resources.files("edge_runtime").joinpath("profiles/default_profiles.json").read_text()
    return _parse(json.loads(text))


def load_profiles(path: str | Path | None = None, extra: Mapping[str, Any] | None = None) -> dict[str, ScannerProfile]:
    """Defaults, then a JSON file of profiles, then inline ones (e.g. from edge.toml); later names win."""
    profiles = default_profiles()
    if path is not None:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ProfileError(f"cannot read scanner profiles from {path}: {exc}") from exc
        profiles.update(_parse(data))
    if extra:
        profiles.update(_parse(extra))
    return profiles


def get_profile(profiles: Mapping[str, ScannerProfile], name: str) -> ScannerProfile:
    try:
        return profiles[name]
    except KeyError:
        known = ", ".join(sorted(profiles)) or "none"
        raise ProfileError(f"unknown scanner profile {name!r} (known: {known})") from None
