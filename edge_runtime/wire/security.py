"""CURVE security, Ironhouse style: every socket encrypted, servers accept only listed client public keys.

Key files are the pyzmq certificate format (``NAME.key`` public, ``NAME.key_secret`` secret), made by
``edge-runtime keys curve``. The binding side of each link is the CURVE server.
"""

from __future__ import annotations

from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from edge_runtime.errors import FattyLiverError


class KeyFileError(FattyLiverError):
    """A CURVE key file or the allowed-clients folder is missing or unreadable."""


def create_keypair(out_dir: str | Path, name: str) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(str(out), name)
    Path(secret).chmod(0o600)
    return Path(public), Path(secret)


def _load(path: Path, need_secret: bool) -> tuple[bytes, bytes | None]:
    if not Path(path).is_file():
        raise KeyFileError(f"CURVE key file not found: {path}")
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{path}: not a CURVE certificate ({exc})") from exc
    if need_secret and not secret:
        raise KeyFileError(f"{path}: holds no secret key (use the *.key_secret file)")
    return public, secret


def make_client(socket: zmq.Socket, secret_file: Path, server_public_file: Path) -> None:
    public, secret = _load(secret_file, need_secret=True)
    server_public, _ = _load(server_public_file, need_secret=False)
    socket.curve_publickey = public
    socket.curve_secretkey = secret
    socket.curve_serverkey = server_public


def make_server(ctx: zmq.Context, socket: zmq.Socket, secret_file: Path, allowed_clients: Path) -> ThreadAuthenticator:
    """Ironhouse: the socket encrypts, and the authenticator admits only keys found in allowed_clients/.

    Args:
        ctx: the socket's ZeroMQ context (the authenticator runs in it).
        socket: the binding socket to secure.
        secret_file: its *.key_secret.
        allowed_clients: folder of the public *.key files it admits.
    """
    if not Path(allowed_clients).is_dir():
        raise KeyFileError(f"allowed client keys folder not found: {allowed_clients}")
    public, secret = _load(secret_file, need_secret=True)
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(allowed_clients))
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True
    return auth
