"""Provisioning a cluster that is still forming, through real nats-servers: with the meta leader
elected but a peer not yet joined, a stream with three replicas cannot be placed; provisioning
waits for the peer instead of failing (it used to fail the stack's start, seen once in CI)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from maskline.contracts import subjects as table
from maskline.infra.embedded import nats as embedded
from maskline.infra.embedded.process import free_ports, port_open, spawn, wait_until
from maskline.shared.bus import STREAMS
from maskline.shared.provision import provision, wait_jetstream

pytestmark = pytest.mark.nats

AUTH = 'authorization { users = [ { user: admin, password: "provision-test" } ] }\n'


@pytest.fixture
def three_nodes(tmp_path: Path) -> Iterator[tuple[list[embedded.Node], list[subprocess.Popen[bytes]], Path]]:
    first = free_ports(9)
    nodes = embedded.nodes(3, first, first + 3, first + 6)
    procs: list[subprocess.Popen[bytes]] = []
    yield nodes, procs, tmp_path
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def start(node: embedded.Node, nodes: list[embedded.Node], home: Path) -> subprocess.Popen[bytes]:
    conf = embedded.write_config(home / node.program, node, AUTH, peers=nodes)
    proc = spawn(embedded.command(conf), home / node.program / "nats.log")
    wait_until(lambda: port_open(node.port), 20, node.name, proc, home / node.program / "nats.log")
    return proc


async def test_provisioning_waits_for_a_peer_that_is_still_joining(three_nodes) -> None:  # type: ignore[no-untyped-def]
    nodes, procs, home = three_nodes
    procs += [start(node, nodes, home) for node in nodes[:2]]  # two of three: a meta leader, no third peer
    nc = await nats.connect([nodes[0].url], user="admin", password="provision-test")
    try:
        js = nc.jetstream()
        await wait_jetstream(js)  # the two elect a meta leader: JetStream answers, placement of R3 cannot work yet
        provisioning = asyncio.create_task(provision(js, replicas=3))
        await asyncio.sleep(3)
        assert not provisioning.done()  # waiting for the third peer ("no suitable peers for placement"), not failed
        procs.append(await asyncio.to_thread(start, nodes[2], nodes, home))
        await asyncio.wait_for(provisioning, 90)
        for stream in [*STREAMS, *(b.stream for b in table.BUCKETS)]:
            assert (await js.stream_info(stream)).config.num_replicas == 3
    finally:
        await nc.close()
