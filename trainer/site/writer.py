"""The adapted bundle on disk: the parent's files, the refitted ones over them, and a new bundle.json with every hash
recomputed, assembled beside its target and loaded back through the bedside's own verification; only a verified
bundle takes the target's name (as export writes a bundle)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from edge_runtime.contracts import BundleMeta, EnsembleHead, EnsembleSpec, HeadOutputs
from edge_runtime.model.bundle import Bundle, load_bundle, sha256_file
from trainer.export.bedside_head import BedsideHead
from trainer.export.writer import ENSEMBLE_METHOD, HEAD_FILE, bag_file


def bump(version: str) -> str:
    """A minor version bump: an adapted bundle is the parent's model, refitted."""
    major, minor, _ = (int(x) for x in version.split("+")[0].split("-")[0].split("."))
    return f"{major}.{minor + 1}.0"


def hashed_ids(ids: list[str]) -> list[str]:
    """Each local subject id hashed: no id leaves the site inside a bundle."""
    return sorted(hashlib.sha256(s.encode()).hexdigest()[:16] for s in ids)


def head_files(parent: Bundle, members: list[BedsideHead], description: str) -> tuple[dict[str, bytes], dict]:
    """The retrained ensemble's files and the bundle.json fields that name them.

    Args:
        parent: the parent bundle (its ensemble's subsample and quantization record).
        members: the converted heads, the one trained on every subject first.
        description: what the heads are, for bundle.json's quantization.head.
    """
    files = {HEAD_FILE: members[0].blob} | {bag_file(m): h.blob for m, h in enumerate(members[1:], start=1)}
    heads = [EnsembleHead(file=bag_file(m), **h.outputs) for m, h in enumerate(members[1:], start=1)]
    subsample = parent.meta.ensemble.subsample if parent.meta.ensemble else 0.8
    updates = {
        "head_outputs": HeadOutputs(**members[0].outputs),
        "ensemble": EnsembleSpec(method=ENSEMBLE_METHOD, subsample=subsample, heads=heads) if heads else None,
        "quantization": parent.meta.quantization.model_copy(update={"head": description, "bias_correction": None}),
    }
    return files, updates


def write_adapted(parent: Bundle, out: Path, updates: dict[str, Any], replaced: dict[str, bytes]) -> BundleMeta:
    """Write the adapted bundle and verify it before it takes ``out``'s name.

    Args:
        parent: the bundle adapted.
        out: the adapted bundle's folder (absent or empty).
        updates: bundle.json fields that change (version, exam, guard, view_gate, scanners, heads, site).
        replaced: files written over the parent's (or added), by name: the refitted gate, the retrained heads.
    """
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        for name in parent.meta.sha256:
            shutil.copy2(parent.root / name, partial / name)
        for name, blob in replaced.items():
            (partial / name).write_bytes(blob)
        fields = parent.meta.model_dump(by_alias=True) | updates
        listed = set(parent.meta.sha256) | set(replaced)
        if "ensemble" in updates:  # a smaller ensemble than the parent's leaves no stale bag listed
            kept = {h.file for h in updates["ensemble"].heads} if updates["ensemble"] else set()
            listed = {n for n in listed if not n.startswith("head_bag") or n in kept}
        fields["sha256"] = {name: sha256_file(partial / name) for name in sorted(listed)}
        meta = BundleMeta.model_validate(fields)
        meta.write(partial / "bundle.json")
        load_bundle(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if out.exists():
        out.rmdir()  # empty (site_adapt refuses a folder with anything in it)
    partial.rename(out)
    return meta
