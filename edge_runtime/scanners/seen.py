"""The one rule for a console the bundle never trained on, whichever source its frames come from: refused, unless the
site allows unseen scanners (then served and counted)."""

from __future__ import annotations

from edge_runtime.model.bundle import Bundle


def unseen_refusal(bundle: Bundle, profile: str, allow_unseen: bool) -> str | None:
    """Why frames of ``profile`` are not served by ``bundle`` (None: they are; ``seen`` says whether it trained on
    them)."""
    if profile in bundle.meta.scanners or allow_unseen:
        return None
    trained = ", ".join(sorted(bundle.meta.scanners))
    return (
        f"scanner {profile!r} is not one bundle {bundle.name!r} was trained on ({trained}); "
        "set scanners.allow_unseen to serve it anyway"
    )


def seen(bundle: Bundle, profile: str) -> bool:
    return profile in bundle.meta.scanners
