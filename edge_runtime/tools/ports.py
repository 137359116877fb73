"""Loopback ports for the servers a process starts (a test's Orthanc, a benchmark's bedside, a federated study's
SuperLink and SuperNodes)."""

from __future__ import annotations

import socket

_HANDED_OUT: set[int] = set()  # ports free_port gave this process: the kernel may offer a released one again


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (the caller binds it next), never one this process was given
    before: a server that takes two ports at once (Orthanc's DICOM and HTTP) must not be given the same one twice."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
