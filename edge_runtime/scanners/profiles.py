"""Scanner profiles: where the B-mode image sits on each scanner's screen.

A frame grabber sees the whole scanner screen (text, depth scale, logo). The model must only ever see the
B-mode region, and that region differs by vendor, model and preset, so it is data, not code.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from edge_runtime.errors import FattyLiverError


class ProfileError(FattyLiverError):
    """A scanner profile is unknown or malformed, or a frame does not fit it."""


FULL_FRAME = "full-frame"  # crop value of a profile for images that already are the B-mode region
DICOM_REGION = "dicom-region"  # crop value: the DICOM file's own ultrasound region says where the image is


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
    full_frame: bool = False  # images already cropped to the B-mode region: any size, the crop is all of it
    dicom_region: bool = False  # DICOM files cropped by their own region sequence when read (then full-frame)

    @property
    def screen_size(self) -> tuple[int, int]:
        return self.screen_width, self.screen_height

    @property
    def crop_box(self) -> tuple[int, int, int, int]:
        return self.crop_x, self.crop_y, self.crop_width, self.crop_height

    def fits(self, width: int, height: int) -> bool:
        """Whether an image of this size is one of this profile's screens (any size for a full-frame one)."""
        return self.full_frame or self.dicom_region or (width, height) == self.screen_size

    def box_for(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The B-mode box on an image of this size."""
        return (0, 0, width, height) if self.full_frame or self.dicom_region else self.crop_box

    def expected_size(self) -> str:
        if self.full_frame or self.dicom_region:
            return "any size (full-frame)"
        return f"{self.screen_width}x{self.screen_height}"

    @classmethod
    def from_mapping(cls, name: str, data: Mapping[str, Any]) -> ScannerProfile:
        if isinstance(data, Mapping) and data.get("crop") in (FULL_FRAME, DICOM_REGION):
            if "vendor" not in data:
                raise ProfileError(f"scanner profile {name!r} needs 'vendor'")
            kind = {"full_frame": True} if data["crop"] == FULL_FRAME else {"dicom_region": True}
            return cls(name, str(data["vendor"]), 0, 0, 0, 0, 0, 0, **kind)
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
        if self.full_frame or self.dicom_region:
            return {"vendor": self.vendor, "crop": FULL_FRAME if self.full_frame else DICOM_REGION}
        return {
            "vendor": self.vendor,
            "screen": [self.screen_width, self.screen_height],
            "crop": list(self.crop_box),
        }


def _parse(data: Mapping[str, Any]) -> dict[str, ScannerProfile]:
    return {name: ScannerProfile.from_mapping(name, spec) for name, spec in data.items() if not name.startswith("_")}


def default_profiles() -> dict[str, ScannerProfile]:
    """The profiles of the phantom's PHILIPS-like and GE-like screens, shipped with the package."""
    text = resources.files("edge_runtime").joinpath("scanners/default_profiles.json").read_text()
    return _parse(json.loads(text))


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ProfileError(f"scanner profile(s) {', '.join(map(repr, twice))} defined twice")
    return dict(pairs)


def read_profiles_file(path: str | Path) -> dict[str, ScannerProfile]:
    """A profiles file (JSON, or TOML by its suffix): {name: {vendor, screen, crop}}, optionally under a
    top-level "profiles" key. Every problem is a ProfileError naming the file and the profile."""
    path = Path(path)
    try:
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text, object_pairs_hook=_refuse_duplicates)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError, ProfileError) as exc:
        raise ProfileError(f"{path}: cannot read scanner profiles: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("profiles"), dict):
        data = data["profiles"]
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: expected a mapping of profile name -> {{vendor, screen, crop}}")
    try:
        return _parse(data)
    except ProfileError as exc:
        raise ProfileError(f"{path}: {exc}") from None


def load_profiles(path: str | Path | None = None, extra: Mapping[str, Any] | None = None) -> dict[str, ScannerProfile]:
    """Shipped profiles, then a profiles file, then inline ones (edge.toml); a later definition of a name wins."""
    profiles = default_profiles()
    if path is not None:
        profiles.update(read_profiles_file(path))
    if extra:
        profiles.update(_parse(extra))
    return profiles


def profiles_mapping(profiles: Mapping[str, ScannerProfile]) -> dict[str, dict[str, Any]]:
    """Name -> {vendor, screen, crop}: the form profile files, runs and bundles record."""
    return {name: profile.to_mapping() for name, profile in sorted(profiles.items())}


def get_profile(profiles: Mapping[str, ScannerProfile], name: str) -> ScannerProfile:
    try:
        return profiles[name]
    except KeyError:
        known = ", ".join(sorted(profiles)) or "none"
        raise ProfileError(f"unknown scanner profile {name!r} (known: {known})") from None
