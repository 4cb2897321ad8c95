"""What people's identities cost the gateway (issue 32): the latency of one authenticated request
(`GET /v1/me`) by a tenant API key, a personal key and a session cookie, and of a password sign-in
(argon2id with the gateway's default profile), against a fresh embedded stack.

    python -m bench.sign_in [--requests 300] [--sign-ins 15] [--out results.json]

A tenant key is resolved from memory; a personal key reads its pointer and the account (two
key-value reads), a session its record and the account (two). Requests are sent one at a time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from maskline.infra.embedded.settings import StackSettings, on_free_ports
from maskline.infra.embedded.stack import Stack
from maskline.shared.config import load

COOKIE = "__Host-maskline-session"
PASSWORD = "a benchmark's long password"


def timed(http: httpx.Client, method: str, path: str, times: int, **kwargs: object) -> list[float]:
    took = []
    for _ in range(times):
        start = time.perf_counter()
        http.request(method, path, **kwargs).raise_for_status()  # type: ignore[arg-type]
        took.append((time.perf_counter() - start) * 1000)
    return took


def run(gateway: str, key: str, requests: int, sign_ins: int) -> dict[str, dict[str, float]]:
    with httpx.Client(base_url=gateway, timeout=60) as http:
        by_key = {"Authorization": f"Bearer {key}"}
        login = f"bench-{int(time.time())}@example.com"
        http.post("/v1/users", json={"login": login, "role": "owner", "password": PASSWORD}, headers=by_key).raise_for_status()
        signing = timed(http, "POST", "/v1/sign-in", sign_ins, json={"login": login, "password": PASSWORD})
        answer = http.post("/v1/sign-in", json={"login": login, "password": PASSWORD})
        session = {"Cookie": f"{COOKIE}={answer.cookies[COOKIE]}", "X-CSRF-Token": answer.json()["csrf_token"]}
        personal = http.post("/v1/me/keys", json={"name": "bench"}, headers=session).raise_for_status().json()["key"]
        ways = {"tenant key": by_key, "personal key": {"Authorization": f"Bearer {personal}"}, "session": session}
        for headers in ways.values():  # warm: connections, caches
            timed(http, "GET", "/v1/me", 20, headers=headers)
        found = {name: timed(http, "GET", "/v1/me", requests, headers=headers) for name, headers in ways.items()}
    results = {name: {"median_ms": statistics.median(t), "p90_ms": sorted(t)[int(0.9 * len(t))]} for name, t in found.items()}
    base = results["tenant key"]["median_ms"]
    for figures in results.values():
        figures["ratio_to_tenant_key"] = figures["median_ms"] / base
    results["password sign-in"] = {"median_ms": statistics.median(signing), "p90_ms": sorted(signing)[int(0.9 * len(signing))]}
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--sign-ins", type=int, default=15)
    parser.add_argument("--url", help="an already running gateway")
    parser.add_argument("--api-key", default="dev-key")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    stack = None
    if args.url:
        gateway = args.url
    else:
        settings = on_free_ports(load(StackSettings), tempfile.mkdtemp(prefix="maskline-bench-"), log_level="warning")
        stack = Stack(settings)
        stack.up()
        gateway = stack.gateway_url
    try:
        results = run(gateway, args.api_key, args.requests, args.sign_ins)
    finally:
        if stack is not None:
            stack.down()
    for name, figures in results.items():
        ratio = f"  x{figures['ratio_to_tenant_key']:.2f}" if "ratio_to_tenant_key" in figures else ""
        print(f"{name:<17} median {figures['median_ms']:7.2f} ms  p90 {figures['p90_ms']:7.2f} ms{ratio}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
