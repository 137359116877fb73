"""Signed bundles: who made a bundle, proven before the bedside trusts it.

A bundle's ``bundle.json`` holds the SHA-256 of every file it ships, so one Ed25519 signature over the exact
bytes of ``bundle.json`` covers the whole bundle: an edited ``bundle.json`` breaks the signature, and a swapped
and re-hashed file changes ``bundle.json``. The signature lives beside it in ``bundle.sig`` (JSON: the signing
key's id, the signed file's SHA-256 and the signature). Keys are Ed25519 (``cryptography``): the secret key
as PKCS#8 PEM, mode 0600; the public key as SubjectPublicKeyInfo PEM, mode 0644. A folder of ``*.public``
files is the set of keys a bedside trusts. Why Ed25519 from ``cryptography`` rather than OpenSSF model-signing:
docs/DESIGN.md, "Signed bundles".
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge_runtime.contracts import BundleError

SIGNATURE_FILE = "bundle.sig"
SIGNATURE_SCHEMA = "fatty-liver-edge/signature@1"
DOMAIN = b"fatty-liver-edge bundle.json v1\n"  # a signature made for anything else never verifies here
SECRET_SUFFIX, PUBLIC_SUFFIX = ".secret", ".public"


class SignatureRefused(BundleError):
    """The bundle's signature is absent, by a key not trusted here, or does not match (the message says which)."""


def key_id(public: Ed25519PublicKey) -> str:
    """The first 16 hex digits of the SHA-256 of the raw public key: how a signature names its key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def make_signing_key(out_dir: Path, name: str) -> tuple[Path, Path]:
    """A new key pair as ``NAME.secret`` (0600, never overwritten) and ``NAME.public`` (0644)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    secret_path, public_path = out_dir / f"{name}{SECRET_SUFFIX}", out_dir / f"{name}{PUBLIC_SUFFIX}"
    if secret_path.exists() or public_path.exists():
        raise FileExistsError(f"{secret_path}: a key of that name exists; choose another --name or folder")
    secret = Ed25519PrivateKey.generate()
    pem = secret.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as fh:
        fh.write(pem)
    public = secret.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public_path.write_bytes(public)
    public_path.chmod(0o644)
    return secret_path, public_path


def read_secret_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise BundleError(f"{path}: not a readable signing key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{path}: not an Ed25519 signing key")
    return key


def read_trusted_keys(folder: Path) -> dict[str, tuple[str, Ed25519PublicKey]]:
    """key id -> (file name, key) for every ``*.public`` file in the folder; an empty folder trusts nobody."""
    if not folder.is_dir():
        raise BundleError(f"{folder}: no such folder of trusted keys")
    trusted = {}
    for path in sorted(folder.glob(f"*{PUBLIC_SUFFIX}")):
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except ValueError as exc:
            raise BundleError(f"{path}: not a readable public key ({exc})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise BundleError(f"{path}: not an Ed25519 public key")
        trusted[key_id(key)] = (path.name, key)
    if not trusted:
        raise BundleError(f"{folder}: holds no *{PUBLIC_SUFFIX} keys, so no bundle can be trusted")
    return trusted


def sign_bundle(bundle_dir: Path, secret_path: Path, verified_sha: str | None = None) -> str:
    """Write ``bundle.sig`` for the bundle's current ``bundle.json``; returns the signing key's id. With
    ``verified_sha`` (a loaded bundle's ``sha``) only the bytes that were verified are signed."""
    meta = bundle_dir / "bundle.json"
    if not meta.is_file():
        raise BundleError(f"{bundle_dir}: no bundle.json (is this a model bundle directory?)")
    secret = read_secret_key(secret_path)
    raw = meta.read_bytes()
    if verified_sha is not None and not hashlib.sha256(raw).hexdigest().startswith(verified_sha):
        raise BundleError(f"{meta}: changed after it was verified; not signed")
    record = {
        "schema": SIGNATURE_SCHEMA,
        "algorithm": "ed25519",
        "key_id": key_id(secret.public_key()),
        "bundle_json_sha256": hashlib.sha256(raw).hexdigest(),
        "signature": base64.b64encode(secret.sign(DOMAIN + raw)).decode(),
    }
    partial = bundle_dir / f"{SIGNATURE_FILE}.partial"
    partial.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(partial, bundle_dir / SIGNATURE_FILE)
    return record["key_id"]


@dataclass(frozen=True)
class TrustPolicy:
    """What the bedside accepts: bundles signed by one of ``trusted``, or, in development only, unsigned ones."""

    trusted: dict[str, tuple[str, Ed25519PublicKey]]
    allow_unsigned: bool = False

    @classmethod
    def from_folder(cls, folder: str | Path | None, allow_unsigned: bool = False) -> TrustPolicy:
        return cls(read_trusted_keys(Path(folder)) if folder else {}, allow_unsigned)

    def check(self, bundle_dir: Path, raw: bytes) -> str | None:
        """The trusted key file that signed these ``bundle.json`` bytes, or None for an allowed unsigned bundle."""
        path = bundle_dir / SIGNATURE_FILE
        if self.allow_unsigned and not self.trusted:
            return None  # development without keys: nothing to check a signature against
        if not path.is_file():
            if self.allow_unsigned:
                return None
            raise SignatureRefused(
                f"{bundle_dir}: unsigned bundle (no {SIGNATURE_FILE}); sign it or pass --allow-unsigned"
            )
        record = _read_signature(path)
        if record["key_id"] not in self.trusted:
            raise SignatureRefused(f"{path}: signed by key {record['key_id']}, which is not among the trusted keys")
        name, key = self.trusted[record["key_id"]]
        signed_sha, actual_sha = record.get("bundle_json_sha256"), hashlib.sha256(raw).hexdigest()
        if signed_sha is not None and signed_sha != actual_sha:
            raise SignatureRefused(
                f"{path}: the signature by {name} does not match bundle.json: it was made for bundle.json with "
                f"SHA-256 {str(signed_sha)[:16]}..., this one is {actual_sha[:16]}... (edited after signing?)"
            )
        try:
            key.verify(base64.b64decode(record["signature"], validate=True), DOMAIN + raw)
        except (InvalidSignature, ValueError):
            raise SignatureRefused(
                f"{path}: the signature by {name} does not match bundle.json (edited after signing?)"
            ) from None
        return name


def _read_signature(path: Path) -> dict[str, str]:
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SignatureRefused(f"{path}: not a readable signature ({exc})") from None
    wanted = ("schema", "algorithm", "key_id", "signature")
    if not isinstance(record, dict) or any(not isinstance(record.get(k), str) for k in wanted):
        raise SignatureRefused(f"{path}: not a signature file (needs {', '.join(wanted)})")
    if record["schema"] != SIGNATURE_SCHEMA or record["algorithm"] != "ed25519":
        raise SignatureRefused(f"{path}: unsupported signature {record['schema']} / {record['algorithm']}")
    return record
