"""Ports for embedded stacks: never ones the kernel may give an outgoing connection, never twice."""

from __future__ import annotations

import socket

import pytest

from maskline.infra.embedded.process import _ephemeral_range, free_port, free_ports

pytestmark = pytest.mark.unit


def test_ports_lie_outside_the_ephemeral_range_so_no_outgoing_connection_can_take_them() -> None:
    # CI once saw augment crash-loop for 23 minutes: its probe port came from bind(0), and a
    # long-lived NATS connection took it as its local port before augment bound it.
    low, high = _ephemeral_range()
    ports = [free_port() for _ in range(50)]
    assert all(not low <= port <= high for port in ports)


def test_no_port_is_handed_out_twice_before_it_is_bound() -> None:
    firsts = [free_ports(16) for _ in range(20)]
    spans = [set(range(first, first + 16)) for first in firsts]
    assert len(set().union(*spans)) == 16 * 20


def test_a_handed_out_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
