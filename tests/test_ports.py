"""Loopback ports for the servers a test, a benchmark or a federated study starts: Orthanc takes two at once (DICOM
and HTTP), and a port handed out twice made it fail to start ("the TCP port of the HTTP server is ... already in
use")."""

from __future__ import annotations

from edge_runtime.tools.ports import free_port


def test_a_port_is_never_handed_out_twice_in_one_process() -> None:
    ports = [free_port() for _ in range(1000)]
    assert len(set(ports)) == len(ports)
