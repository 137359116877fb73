"""The phantom's scanner screen layouts: where the B-mode box sits and what clutter surrounds it.

Real sites own many consoles: SXGA carts, XGA portables, UXGA and widescreen monitors, each with its own
colour bar, grey bar, TGC curve, depth ruler, thumbnail and body marker, and calipers or text burned into the
image on frozen frames. The phantom renders the same subject on any of these layouts so that every path
(scanner onboarding, training on mixed sites, serving) has a twin with known truth.

The two classic layouts (``phantom-philips``, ``phantom-ge``) are the shipped profiles and keep their own
drawing in ``phantom.screen``; the others are declared here, geometry and clutter together.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from edge_runtime.scanners.profiles import ScannerProfile, default_profiles
from phantom.subject import Subject

Colour = tuple[int, int, int]


@dataclass(frozen=True)
class ClutterStyle:
    """What a console draws around (and sometimes into) its B-mode box, in screen pixels."""

    background: Colour
    header: Colour  # top banner colour
    text: Colour
    accent: Colour  # TGC curve, caption
    brand: str
    info_xy: tuple[int, int]  # top-left of the acquisition-parameter panel
    ruler_side: str  # "left" or "right" of the box
    tgc_x: int
    grey_bar: tuple[int, int, int] | None  # x, y, height
    colour_bar: tuple[int, int, int] | None  # x, y, height
    thumbnail: tuple[int, int, int] | None  # x, y, width (height follows the box's aspect)
    body_marker_xy: tuple[int, int]
    caliper_share: float  # share of frames frozen with calipers and measurement text in the image
    text_header: bool = False  # burned-in patient text in a band right above the box (as some consoles draw it)


@dataclass(frozen=True)
class ScreenLayout:
    name: str
    vendor: str  # whose imaging physics the layout's subjects get (phantom.vendors)
    profile: ScannerProfile
    style: ClutterStyle | None  # None: a classic layout drawn by phantom.screen
    second_box: tuple[int, int, int, int] | None = None  # a dual display's right image (the profile crops the left)

    @property
    def boxes(self) -> list[tuple[int, int, int, int]]:
        """Every B-mode box on the screen: one, or a dual display's two, left to right."""
        return [self.profile.crop_box, *([self.second_box] if self.second_box else [])]


def _styled(
    name: str, vendor: str, screen: tuple[int, int], crop: tuple[int, int, int, int], style: ClutterStyle
) -> ScreenLayout:
    """A declared layout: its profile (checked like any profile) and its clutter."""
    mapping = {"vendor": vendor, "screen": list(screen), "crop": list(crop)}
    return ScreenLayout(name, vendor, ScannerProfile.from_mapping(name, mapping), style)


def _classic() -> tuple[ScreenLayout, ...]:
    """The two shipped layouts: their geometry is the shipped profiles', their drawing phantom.screen's."""
    shipped = default_profiles()
    return tuple(ScreenLayout(name, shipped[name].vendor, shipped[name], None) for name in CLASSIC_LAYOUTS)


CLASSIC_LAYOUTS = ("phantom-philips", "phantom-ge")  # one per vendor: the phantom's default
# Crop boxes follow each vendor's sector aspect (width / height ~1.40 PHILIPS, ~1.29 GE), as consoles do.
STYLED_LAYOUTS: tuple[ScreenLayout, ...] = (
    _styled(
        "phantom-philips-1280x1024",
        "PHILIPS",
        (1280, 1024),
        (300, 200, 700, 502),
        ClutterStyle(
            background=(12, 14, 20),
            header=(30, 40, 70),
            text=(210, 215, 225),
            accent=(120, 200, 255),
            brand="PHANTOM iU  C5-2  Liver",
            info_xy=(30, 240),
            ruler_side="right",
            tgc_x=1150,
            grey_bar=(1080, 560, 200),
            colour_bar=(1230, 200, 240),
            thumbnail=(1040, 820, 180),
            body_marker_xy=(60, 900),
            caliper_share=0.3,
        ),
    ),
    _styled(
        "phantom-ge-1024x768",
        "GE",
        (1024, 768),
        (200, 120, 620, 482),
        ClutterStyle(
            background=(0, 0, 0),
            header=(0, 0, 0),
            text=(255, 255, 0),
            accent=(0, 255, 0),
            brand="PHANTOM e  4C-RS  ABD",
            info_xy=(850, 150),
            ruler_side="left",
            tgc_x=960,
            grey_bar=(20, 400, 160),
            colour_bar=None,
            thumbnail=(20, 620, 130),
            body_marker_xy=(860, 560),
            caliper_share=0.3,
        ),
    ),
    _styled(
        "phantom-philips-1600x1200",
        "PHILIPS",
        (1600, 1200),
        (330, 230, 960, 688),
        ClutterStyle(
            background=(24, 24, 28),
            header=(50, 50, 60),
            text=(230, 230, 230),
            accent=(255, 200, 80),
            brand="PHANTOM CX  C6-2  Abdomen Pen",
            info_xy=(30, 260),
            ruler_side="right",
            tgc_x=1480,
            grey_bar=(1400, 300, 256),
            colour_bar=(1440, 620, 256),
            thumbnail=(30, 980, 200),
            body_marker_xy=(40, 760),
            caliper_share=0.3,
        ),
    ),
    _styled(
        "phantom-ge-1366x768",
        "GE",
        (1366, 768),
        (300, 110, 740, 575),
        ClutterStyle(
            background=(6, 10, 16),
            header=(20, 28, 40),
            text=(255, 255, 255),
            accent=(0, 220, 255),
            brand="PHANTOM LOGIQ  C1-5  Abd",
            info_xy=(1080, 130),
            ruler_side="left",
            tgc_x=1300,
            grey_bar=(1090, 460, 180),
            colour_bar=(1130, 460, 180),
            thumbnail=(30, 560, 150),
            body_marker_xy=(40, 180),
            caliper_share=0.3,
        ),
    ),
)


# Consoles that defeat a simple box finder: burned-in patient text in a band touching the image's top edge, and a
# dual display (liver left, kidney-liver right: two B-mode boxes side by side, as a dual-mode store shows them).
HARD_LAYOUTS: tuple[ScreenLayout, ...] = (
    _styled(
        "phantom-ge-header-1280x1024",
        "GE",
        (1280, 1024),
        (260, 170, 760, 590),
        ClutterStyle(
            background=(0, 0, 0),
            header=(0, 0, 0),
            text=(230, 230, 230),
            accent=(0, 220, 120),
            brand="PHANTOM LOGIQ  C1-6  ABD",
            info_xy=(1060, 200),
            ruler_side="left",
            tgc_x=1200,
            grey_bar=(1100, 520, 180),
            colour_bar=None,
            thumbnail=None,
            body_marker_xy=(40, 820),
            caliper_share=0.3,
            text_header=True,
        ),
    ),
    replace(
        _styled(
            "phantom-ge-dual-1600x900",
            "GE",
            (1600, 900),
            (80, 150, 700, 540),
            ClutterStyle(
                background=(4, 4, 8),
                header=(24, 24, 40),
                text=(230, 230, 210),
                accent=(90, 200, 255),
                brand="PHANTOM LOGIQ  C1-6  ABD  DUAL",
                info_xy=(1500, 760),
                ruler_side="left",
                tgc_x=1560,
                grey_bar=None,
                colour_bar=None,
                thumbnail=None,
                body_marker_xy=(40, 760),
                caliper_share=0.0,
            ),
        ),
        second_box=(820, 150, 700, 540),
    ),
)
DUAL_LAYOUT = "phantom-ge-dual-1600x900"


# The third vendor's console (phantom.vendors.CANON): its own screen size, colours and clutter, so a model
# trained on the first two vendors meets a new layout as well as a new rendering.
THIRD_VENDOR_LAYOUTS: tuple[ScreenLayout, ...] = (
    _styled(
        "phantom-canon-1280x800",
        "CANON",
        (1280, 800),
        (260, 130, 760, 525),
        ClutterStyle(
            background=(8, 8, 8),
            header=(40, 20, 20),
            text=(235, 235, 200),
            accent=(255, 140, 60),
            brand="PHANTOM Aplio  PVI-475BX  Abd",
            info_xy=(1060, 150),
            ruler_side="right",
            tgc_x=1220,
            grey_bar=(30, 420, 200),
            colour_bar=None,
            thumbnail=(1060, 600, 160),
            body_marker_xy=(40, 180),
            caliper_share=0.3,
        ),
    ),
)


LAYOUTS: dict[str, ScreenLayout] = {
    layout.name: layout for layout in (*_classic(), *STYLED_LAYOUTS, *THIRD_VENDOR_LAYOUTS, *HARD_LAYOUTS)
}


LAYOUT_SETS: dict[str, tuple[str, ...]] = {
    "classic": CLASSIC_LAYOUTS,
    "three-vendor": (*CLASSIC_LAYOUTS, *(layout.name for layout in THIRD_VENDOR_LAYOUTS)),
    "all": tuple(name for name in LAYOUTS if name != DUAL_LAYOUT),  # a dual display holds two views: no cohort row
}


def get_layout(name: str) -> ScreenLayout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown screen layout {name!r} (known: {', '.join(LAYOUTS)})") from None


def layouts_by_vendor(names: list[str] | tuple[str, ...]) -> dict[str, list[ScreenLayout]]:
    """Vendor -> the chosen layouts of that vendor, in the order given."""
    out: dict[str, list[ScreenLayout]] = {}
    for name in names:
        layout = get_layout(name)
        out.setdefault(layout.vendor, []).append(layout)
    return out


def assign_layouts(subjects: list[Subject], names: list[str] | tuple[str, ...]) -> list[Subject]:
    """Each subject on one of its vendor's chosen layouts, taking them in turn, so a mixed cohort spreads
    every vendor's subjects evenly over that vendor's consoles."""
    chosen = layouts_by_vendor(names)
    missing = sorted({s.vendor for s in subjects} - set(chosen))
    if missing:
        raise ValueError(f"no layout chosen for vendor(s) {', '.join(missing)}")
    seen: dict[str, int] = {}
    out = []
    for subject in subjects:
        turn = seen.get(subject.vendor, 0)
        seen[subject.vendor] = turn + 1
        out.append(replace(subject, layout=chosen[subject.vendor][turn % len(chosen[subject.vendor])].name))
    return out
