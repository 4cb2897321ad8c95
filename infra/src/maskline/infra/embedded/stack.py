"""The embedded stack: nats-server, tritonserver and every service as its own process, on one host,
under a supervisor (supervisord) that restarts what crashes.

`Stack.up()` writes the configurations, starts the supervisor (which starts every program in
priority order), provisions the bus and waits for the gateway and every service to be ready;
`down()` stops them all — whole process groups, so no Triton stub outlives its server — and reaps
what a crashed Triton left behind. A state file in the home directory lets `maskline down`,
`maskline status` and `maskline restart` find a stack started by another command.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maskline.contracts import subjects as table
from maskline.infra.embedded import credentials, nats, reap, triton
from maskline.infra.embedded.process import port_open, wait_until
from maskline.infra.embedded.seed import provision_and_seed
from maskline.infra.embedded.settings import StackSettings
from maskline.infra.embedded.supervisor import Program, Supervisor
from maskline.shared.bus import BUS_UNAVAILABLE, connect
from maskline.shared.config import RuntimeSettings, load
from maskline.shared.operations.fleet import service_status
from maskline.shared.probes import probe

#: Start order: the gateway last, when what it fronts is up.
#: Every service of the system table, the gateway last: it takes traffic once the workers consume.
START_ORDER = tuple(sorted(table.SERVICES, key=lambda service: service == table.GATEWAY))
#: Every worker runs at a lower CPU priority than the front door (gateway) and the bus, as separate
#: CPU allocations would have it in a cluster: under overload on one host the gateway still refuses
#: in milliseconds and NATS answers at once, while the pipeline takes what is left. (With ingest,
#: infer and audit at normal priority, refusals under 10x overload had a p99 of 87.8 ms; lowered
#: too, 11.7 and 19.2 ms in two runs: docs/reliability.md.)
FRONT = ("gateway",)
WORKER_NICE = 10
STATE_FILE = "stack.json"


@dataclass
class Stack:
    settings: StackSettings
    extra_env: dict[str, str] = field(default_factory=dict)
    """Settings for the services beyond the stack's own (e.g. MASKLINE_MAX_UPLOAD_BYTES)."""

    @property
    def home(self) -> Path:
        return Path(self.settings.home).resolve()

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def nats_nodes(self) -> list[nats.Node]:
        """The nats-servers this stack runs: none when it uses an external NATS (`nats_url`)."""
        s = self.settings
        return [] if s.nats_url else nats.nodes(s.nats_cluster, s.nats_port, s.nats_monitor_port, s.nats_route_port)

    @property
    def nats_url(self) -> str:
        """Every server the services may connect to: nats-py fails over between them."""
        return self.settings.nats_url or ",".join(node.url for node in self.nats_nodes)

    @property
    def supervisor(self) -> Supervisor:
        return Supervisor(self.home)

    @property
    def credentials_dir(self) -> Path:
        return self.home / "credentials"

    def service_env(self) -> dict[str, str]:
        """The services' environment: the caller's, with the stack's addresses filled in."""
        s, home = self.settings, self.home
        env = dict(os.environ)
        env.update(
            {
                "MASKLINE_NATS_URL": self.nats_url,
                "MASKLINE_TRITON_URL": f"127.0.0.1:{s.triton_http_port}",
                "MASKLINE_TRITON_REPOSITORY": str(home / "triton" / "models"),
                "MASKLINE_PORT": str(s.port),
                "MASKLINE_API_KEYS": s.api_keys,
                "MASKLINE_LOG_LEVEL": s.log_level,
                "MASKLINE_NATS_CREDENTIALS_DIR": str(self.credentials_dir),
                "MASKLINE_AUDIT_SIGNING_KEY_FILE": str(self.credentials_dir / credentials.AUDIT_KEY),
                "MASKLINE_AUDIT_PUBLIC_KEY_FILE": str(self.credentials_dir / credentials.AUDIT_PUBLIC_KEY),
            }
        )
        # A service connects as itself; an identity set by the caller's shell must not leak into it.
        env.pop("MASKLINE_NATS_IDENTITY", None)
        env.pop("MASKLINE_NATS_NKEY_FILE", None)
        # A cluster of the stack's own replicates every stream and bucket on three nodes (or all it has).
        env.setdefault("MASKLINE_STREAM_REPLICAS", str(min(3, max(1, len(self.nats_nodes)))))
        env.setdefault("MASKLINE_STORE", "fs")
        env.setdefault("MASKLINE_STORE_PATH", str(home / "objects"))
        env.setdefault("MASKLINE_STORE_CHECK_ACCESS", "true")  # each service only where its MinIO policy would allow
        env.setdefault("MASKLINE_WARM_MODELS", "shapes-unet,person-selfie")
        env.setdefault("MASKLINE_TRITON_INSTANCES", str(s.triton_instances))
        env.update(self.extra_env)
        return env

    def client_settings(self, identity: str) -> RuntimeSettings:
        """How a tool or test connects to this stack's NATS as `identity` (admin, auditor, a bus client)."""
        return RuntimeSettings(
            nats_url=self.nats_url,
            nats_identity=identity,
            nats_credentials_dir=str(self.credentials_dir),
            store_path=str(self.home / "objects"),
        )

    def labels(self) -> list[str]:
        """Every service program: one per service, `infer-2`... for more infer instances."""
        names = []
        counts = {"infer": self.settings.infer_instances, "merge": self.settings.merge_instances}
        for name in START_ORDER:
            count = counts.get(name, 1)
            names += [name if i == 0 else f"{name}-{i + 1}" for i in range(count)]
        return names

    def programs(self, authorization: str) -> list[Program]:
        s, home = self.settings, self.home
        # -P: the working directory (the stack's home, which holds a `triton/` folder) must not shadow
        # installed packages; torch probes `import triton` and would find that folder.
        python = [sys.executable, "-P"]
        triton_args = [str(v) for v in (home, s.triton_http_port, s.triton_grpc_port, s.triton_metrics_port, s.torch_threads)]
        found = [
            Program(node.program, nats.command(self._nats_config(node, authorization)), priority=10, stop_wait_s=20)
            for node in self.nats_nodes
        ]
        found += [
            Program(
                "triton",
                [*python, "-m", "maskline.infra.embedded.triton_run", *triton_args],
                priority=20,
                stop_wait_s=10,
                nice=WORKER_NICE,
            ),
        ]
        probes = self.probe_ports()
        for index, label in enumerate(self.labels()):
            service = label.split("-", 1)[0]
            nice = 0 if service in FRONT else WORKER_NICE
            env = {"MASKLINE_HEALTH_PORT": str(probes[label])} if label in probes else {}
            command = [*python, "-m", f"maskline.services.{service}"]
            found.append(Program(label, command, priority=30 + index, nice=nice, environment=env))
        return found

    def probe_ports(self) -> dict[str, int]:
        """Worker program → the port of its probes and metrics (none without `probe_port`)."""
        if not self.settings.probe_port:
            return {}
        workers = [label for label in self.labels() if label.split("-", 1)[0] not in FRONT]
        return {label: self.settings.probe_port + i for i, label in enumerate(workers)}

    def _nats_config(self, node: nats.Node, authorization: str) -> Path:
        # A lone server keeps the home's own jetstream/ (stacks made before clusters existed); a
        # cluster's nodes each store under <home>/nats-N/.
        data_dir = self.home if node.program == "nats" else self.home / node.program
        return nats.write_config(data_dir, node, authorization, self.settings.sync_interval, self.nats_nodes)

    def _save(self) -> None:
        state = {"settings": {f: getattr(self.settings, f) for f in self.settings.__struct_fields__}}
        (self.home / STATE_FILE).write_text(json.dumps(state, indent=2))

    def up(self, on_step: Callable[[str], None] | None = None) -> None:
        """Start everything and wait until it serves; `on_step` hears each step as it begins (the
        CLI's progress: a first start takes ~20 s)."""
        step = on_step or (lambda _: None)
        s, home = self.settings, self.home
        for port in (*(node.port for node in self.nats_nodes), s.triton_http_port, s.port):
            if port_open(port):
                raise RuntimeError(f"port {port} is already in use: is a stack running? (maskline status / maskline down)")
        home.mkdir(parents=True, exist_ok=True)
        made = credentials.ensure(home, s.bus_clients)
        triton.backend_dir(home)
        try:
            step("starting the programs")
            self.supervisor.start(self.programs(credentials.authorization(made)), self.service_env())
            self._save()
            for node in self.nats_nodes:
                step(f"waiting for {node.program}")
                wait_until(
                    functools.partial(port_open, node.port), 30, node.program, log_path=home / "logs" / f"{node.program}.log"
                )
            step("provisioning streams and buckets, registering the bundled models")
            asyncio.run(provision_and_seed(load(RuntimeSettings, self.service_env())))
            step("waiting for tritonserver")
            wait_until(lambda: triton.http_ready(s.triton_http_port), 90, "tritonserver", log_path=home / "logs" / "triton.log")
            step("waiting for the gateway")
            wait_until(self.gateway_ready, 60, "gateway", log_path=home / "logs" / "gateway.log")
            step("waiting for the services (models loading into Triton)")
            wait_until(self._services_ready, 120, "services (models loading into Triton)", log_path=home / "logs")
        except BaseException:
            self.down()
            raise

    @property
    def pids(self) -> dict[str, int]:
        """Program → pid of what runs now (the supervisor's view)."""
        return self.supervisor.pids()

    def start_service(self, label: str) -> int:
        """Start a stopped program (a service, or `nats` / `triton`); returns its pid."""
        self.supervisor.start_program(label)
        return self.pids.get(label, 0)

    def stop_service(self, label: str) -> None:
        """SIGTERM and wait: a service drains its in-flight messages and stays stopped."""
        self.supervisor.stop_program(label)

    def restart(self, label: str) -> int:
        self.stop_service(label)
        return self.start_service(label)

    def kill_service(self, label: str, *, wait_restarted: bool = False) -> int:
        """SIGKILL: the crash case (no drain, in-flight messages unacknowledged). The supervisor
        starts it again after a short back-off; returns the pid that was killed."""
        before = self.pids.get(label, 0)
        self.supervisor.kill_program(label)
        if wait_restarted:
            wait_until(lambda: self.pids.get(label, before) not in (0, before), 30, f"{label} restarted")
        return before

    def stream_leader(self, stream: str) -> str:
        """The program (`nats-2`...) of the node that leads `stream` now; "" while none does (an
        election) or the bus does not answer."""

        async def ask() -> str:
            bus = await connect(self.client_settings("admin"), "stack", identity="admin", reconnect=False)
            try:
                info = await bus.js.stream_info(stream)
            except BUS_UNAVAILABLE:
                return ""
            finally:
                await bus.close()
            leader = info.cluster.leader if info.cluster else None
            return next((n.program for n in self.nats_nodes if n.name == leader), "")

        return asyncio.run(ask())

    def _services_ready(self) -> bool:
        statuses = asyncio.run(service_status(self.client_settings("admin"), list(START_ORDER)))
        return all(status is not None and status.get("ready") for status in statuses.values())

    def gateway_ready(self) -> bool:
        return probe(self.settings.port, "/health/ready", timeout_s=1)

    def down(self) -> None:
        self.supervisor.shutdown()
        reap.reap(self.home)
        (self.home / STATE_FILE).unlink(missing_ok=True)

    @classmethod
    def attach(cls, settings: StackSettings) -> Stack | None:
        """The stack described by the state file in `settings.home`, if there is one."""
        state = Path(settings.home).resolve() / STATE_FILE
        if not state.exists():
            return None
        data = json.loads(state.read_text())
        saved = load(StackSettings, {f"MASKLINE_{k.upper()}": str(v) for k, v in data["settings"].items()})
        return cls(settings=saved)

    def status(self) -> dict[str, Any]:
        try:
            infos = self.supervisor.processes()
            restarts = self.supervisor.restarts()
        except OSError:
            infos, restarts = [], {}
        now = time.time()
        processes = {
            p["name"]: {
                "pid": int(p["pid"]),
                "state": str(p["statename"]).lower(),
                "running": p["statename"] == "RUNNING",
                "uptime_s": round(now - float(p["start"]), 1) if p["statename"] == "RUNNING" else 0.0,
                "restarts": restarts.get(p["name"], 0),
            }
            for p in infos
        }
        return {"home": str(self.home), "gateway": self.gateway_url, "ready": self.gateway_ready(), "processes": processes}
