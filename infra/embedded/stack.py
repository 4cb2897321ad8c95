"""The embedded stack: nats-server, tritonserver and every service as its own process, on one host.

`Stack.up()` starts them in dependency order and waits for the gateway to be ready; `down()`
stops services first (they drain) and servers last. A state file in the home directory lets
`maskline down` / `maskline status` find a stack started by another command.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maskline.infra.embedded import credentials
from maskline.infra.embedded.nats import start_nats
from maskline.infra.embedded.process import port_open, spawn, stop_pid, wait_until
from maskline.infra.embedded.seed import provision_and_seed
from maskline.infra.embedded.settings import StackSettings
from maskline.infra.embedded.triton import start_triton
from maskline.shared.config import RuntimeSettings, load
from maskline.shared.fleet import service_status

#: Start order: the gateway last, when what it fronts is up.
START_ORDER = ("audit", "ingest", "augment", "infer", "merge", "quantize", "gateway")
STATE_FILE = "stack.json"


@dataclass
class Stack:
    settings: StackSettings
    pids: dict[str, int] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    """Settings for the services beyond the stack's own (e.g. MASKLINE_MAX_UPLOAD_BYTES)."""

    @property
    def home(self) -> Path:
        return Path(self.settings.home).resolve()

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    def service_env(self) -> dict[str, str]:
        """The services' environment: the caller's, with the stack's addresses filled in."""
        s, home = self.settings, self.home
        env = dict(os.environ)
        env.update(
            {
                "MASKLINE_NATS_URL": f"nats://127.0.0.1:{s.nats_port}",
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
        env.setdefault("MASKLINE_STORE", "fs")
        env.setdefault("MASKLINE_STORE_PATH", str(home / "objects"))
        env.setdefault("MASKLINE_WARM_MODELS", "shapes-unet")
        env.setdefault("MASKLINE_TRITON_INSTANCES", str(s.triton_instances))
        env.update(self.extra_env)
        return env

    @property
    def credentials_dir(self) -> Path:
        return self.home / "credentials"

    def client_settings(self, identity: str) -> RuntimeSettings:
        """How a tool or test connects to this stack's NATS as `identity` (admin, auditor, a bus client)."""
        return RuntimeSettings(
            nats_url=f"nats://127.0.0.1:{self.settings.nats_port}",
            nats_identity=identity,
            nats_credentials_dir=str(self.credentials_dir),
            store_path=str(self.home / "objects"),
        )

    def _save(self) -> None:
        state = {"pids": self.pids, "settings": {f: getattr(self.settings, f) for f in self.settings.__struct_fields__}}
        (self.home / STATE_FILE).write_text(json.dumps(state, indent=2))

    def up(self) -> None:
        s, home = self.settings, self.home
        for port in (s.nats_port, s.triton_http_port, s.port):
            if port_open(port):
                raise RuntimeError(f"port {port} is already in use: is a stack running? (maskline status / maskline down)")
        home.mkdir(parents=True, exist_ok=True)
        made = credentials.ensure(home, s.bus_clients)
        try:
            self.pids["nats"] = start_nats(
                home, s.nats_port, s.nats_monitor_port, credentials.authorization(made), s.sync_interval
            ).pid
            self._save()
            self.pids["triton"] = start_triton(
                home,
                home / "triton" / "models",
                s.triton_http_port,
                s.triton_grpc_port,
                s.triton_metrics_port,
                torch_threads=s.torch_threads,
            ).pid
            self._save()
            asyncio.run(provision_and_seed(load(RuntimeSettings, self.service_env())))
            for name in START_ORDER:
                count = s.infer_instances if name == "infer" else 1
                for index in range(count):
                    self.start_service(name, name if index == 0 else f"{name}-{index + 1}")
            log = home / "logs" / "gateway.log"
            wait_until(lambda: self._gateway_ready(), 60, "gateway", log_path=log)
            wait_until(self._services_ready, 120, "services (models loading into Triton)", log_path=home / "logs")
        except BaseException:
            self.down()
            raise

    def start_service(self, service: str, label: str | None = None) -> int:
        """Start one instance of a service (also to scale it out, or to restart one that was killed)."""
        label = label or service
        log = self.home / "logs" / f"{label}.log"
        proc = spawn([sys.executable, "-m", f"maskline.services.{service}"], log, env=self.service_env())
        self.pids[label] = proc.pid
        self._save()
        return proc.pid

    def kill_service(self, label: str) -> None:
        """SIGKILL: the crash case (no drain, in-flight messages unacknowledged)."""
        pid = self.pids.pop(label)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        self._save()

    def _services_ready(self) -> bool:
        statuses = asyncio.run(service_status(self.client_settings("admin"), list(START_ORDER)))
        return all(status is not None and status.get("ready") for status in statuses.values())

    def _gateway_ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.gateway_url + "/health/ready", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def down(self) -> None:
        services = [n for n in self.pids if n not in ("nats", "triton")]
        for name in services:
            stop_pid(self.pids[name], timeout=20)
        for name in ("triton", "nats"):
            if name in self.pids:
                stop_pid(self.pids[name], timeout=20)
        self.pids.clear()
        state = self.home / STATE_FILE
        state.unlink(missing_ok=True)

    @classmethod
    def attach(cls, settings: StackSettings) -> Stack | None:
        """The stack described by the state file in `settings.home`, if there is one."""
        state = Path(settings.home).resolve() / STATE_FILE
        if not state.exists():
            return None
        data = json.loads(state.read_text())
        saved = load(StackSettings, {f"MASKLINE_{k.upper()}": str(v) for k, v in data["settings"].items()})
        return cls(settings=saved, pids={k: int(v) for k, v in data["pids"].items()})

    def status(self) -> dict[str, Any]:
        alive = {}
        for name, pid in self.pids.items():
            try:
                os.kill(pid, 0)
                alive[name] = {"pid": pid, "running": True}
            except ProcessLookupError:
                alive[name] = {"pid": pid, "running": False}
        return {"home": str(self.home), "gateway": self.gateway_url, "ready": self._gateway_ready(), "processes": alive}


def wait_for_exit(stack: Stack) -> None:
    """Block until interrupted (used by `maskline up --foreground`)."""
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        stack.down()
