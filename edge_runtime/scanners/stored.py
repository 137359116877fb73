"""Which scanner profile a stored image belongs to. The file names its scanner (Manufacturer, Manufacturer's Model
Name); the box knows its consoles' profiles. A file with tissue regions is cut out where the regions say, so its
profile only says which console it is (the bundle must have been trained on it); a file without regions is a whole
screen, so its profile must also crop it: the screen size must be the profile's.

The order: the site's own table (``[runtime.dicom.scanners]``: ``MANUFACTURER/MODEL`` or ``MANUFACTURER`` to a
profile name), then a profile named like the model, then the one profile of the vendor that fits. Anything
ambiguous or unknown is no match: the image is accepted and not analysed, and the log names the scanner so the
site can add it to the table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from edge_runtime.scanners.profiles import DICOM_REGION, FULL_FRAME, ScannerProfile

GENERIC = (FULL_FRAME, DICOM_REGION)  # the shipped catch-all profiles name no console


@dataclass(frozen=True)
class StoredScanner:
    """What a stored image says about its scanner, and the size and form of its pixels."""

    manufacturer: str
    model: str
    columns: int
    rows: int
    has_regions: bool

    @property
    def said(self) -> str:
        """The scanner as a log line names it (what a site types into its table)."""
        return f"{self.manufacturer or '(no manufacturer)'}/{self.model or '(no model)'}"


def _fits(profile: ScannerProfile, scanner: StoredScanner) -> bool:
    """Whether the profile can take this image: any profile when the file cuts out its own regions; else it must
    crop a whole screen of this size."""
    if scanner.has_regions:
        return True
    return not profile.dicom_region and profile.fits(scanner.columns, scanner.rows)


def _vendor_of(manufacturer: str, vendor: str) -> bool:
    """'GE Healthcare' is GE, 'Philips Medical Systems' is PHILIPS: the profile's vendor as a word of the
    manufacturer's name."""
    words = re.findall(r"[A-Z0-9]+", manufacturer.upper())
    return bool(vendor) and vendor.upper() in words


def _by_table(scanner: StoredScanner, table: Mapping[str, str]) -> str | None:
    keys = {k.strip().upper(): v for k, v in table.items()}
    for key in (f"{scanner.manufacturer}/{scanner.model}".upper(), scanner.manufacturer.upper()):
        if key in keys:
            return keys[key]
    return None


def match_profile(
    scanner: StoredScanner, profiles: Mapping[str, ScannerProfile], table: Mapping[str, str]
) -> tuple[str | None, str]:
    """The profile name for a stored image's scanner (None: no match) and, when none, why, in words.

    Args:
        scanner: what the file says about its scanner and pixels.
        profiles: every profile the box knows (shipped, the site's, the bundle's).
        table: the site's explicit table, ``[runtime.dicom.scanners]``.
    """
    named = _by_table(scanner, table)
    if named is not None:
        if named not in profiles:
            return None, f"[runtime.dicom.scanners] maps {scanner.said} to {named!r}, which is no known profile"
        if not _fits(profiles[named], scanner):
            return None, f"profile {named!r} does not fit a {scanner.columns}x{scanner.rows} image without regions"
        return named, ""
    consoles = {name: p for name, p in profiles.items() if name not in GENERIC}
    by_model = [n for n, p in consoles.items() if n.upper() == scanner.model.upper() and _fits(p, scanner)]
    if by_model:
        return by_model[0], ""
    vendor = [n for n, p in consoles.items() if _vendor_of(scanner.manufacturer, p.vendor) and _fits(p, scanner)]
    if scanner.has_regions and len(vendor) > 1:
        vendor = [n for n in vendor if consoles[n].dicom_region] or vendor
    if len(vendor) == 1:
        return vendor[0], ""
    if len(vendor) > 1:
        return None, f"{scanner.said} fits several profiles ({', '.join(sorted(vendor))}): name one in the table"
    size = "" if scanner.has_regions else f" for a {scanner.columns}x{scanner.rows} screen without regions"
    return None, f"no scanner profile for {scanner.said}{size}; add it to [runtime.dicom.scanners]"
