"""What the embedded stack would start, without starting it: one nats-server, a cluster of three
on loopback, or none when the services are pointed at a bus of the operator's."""

from __future__ import annotations

from pathlib import Path

import pytest

from maskline.infra.embedded.settings import StackSettings, on_free_ports
from maskline.infra.embedded.stack import Stack

pytestmark = pytest.mark.unit
AUTH = "authorization { users = [] }\n"


def test_a_cluster_of_three_gets_unique_names_its_own_stores_and_routes_to_the_others(tmp_path: Path) -> None:
    stack = Stack(on_free_ports(StackSettings(), str(tmp_path), nats_cluster=3))
    programs = {p.name: p for p in stack.programs(AUTH)}
    assert [n.program for n in stack.nats_nodes] == ["nats-1", "nats-2", "nats-3"]
    assert not {"nats"} & set(programs)
    configs = [(tmp_path / node.program / "nats.conf").read_text() for node in stack.nats_nodes]
    for node, config in zip(stack.nats_nodes, configs, strict=True):
        assert f"server_name: {node.name}\n" in config and f"listen: 127.0.0.1:{node.port}" in config
        assert f'store_dir: "{tmp_path / node.program / "jetstream"}"' in config
        others = [o for o in stack.nats_nodes if o != node]
        assert all(f"nats-route://127.0.0.1:{o.route_port}" in config for o in others)
        assert f"nats-route://127.0.0.1:{node.route_port}" not in config
    assert len({n.name for n in stack.nats_nodes}) == 3
    env = stack.service_env()
    assert env["MASKLINE_NATS_URL"].split(",") == [n.url for n in stack.nats_nodes]
    assert env["MASKLINE_STREAM_REPLICAS"] == "3"
    assert env["MASKLINE_STORE_CHECK_ACCESS"] == "true"  # every service where its MinIO policy would allow


def test_a_lone_server_keeps_its_name_and_folder(tmp_path: Path) -> None:
    stack = Stack(on_free_ports(StackSettings(), str(tmp_path)))
    assert [p.name for p in stack.programs(AUTH) if p.name.startswith("nats")] == ["nats"]
    config = (tmp_path / "nats.conf").read_text()
    assert "server_name: maskline-embedded" in config and "cluster {" not in config
    assert stack.service_env()["MASKLINE_STREAM_REPLICAS"] == "1"


def test_an_external_bus_is_used_as_given_and_no_nats_server_is_started(tmp_path: Path) -> None:
    url = "nats://10.0.0.1:4222,nats://10.0.0.2:4222"
    stack = Stack(on_free_ports(StackSettings(), str(tmp_path), nats_url=url))
    assert stack.nats_nodes == [] and not [p for p in stack.programs(AUTH) if p.name.startswith("nats")]
    assert stack.service_env()["MASKLINE_NATS_URL"] == url
    assert stack.client_settings("admin").nats_servers() == url.split(",")
