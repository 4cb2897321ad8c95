"""Fuzz the gateway through its own OpenAPI document (schemathesis): no answer may be a 5xx.

A short run here; `just fuzz` runs every phase with many more examples per operation.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from maskline.client import JsonClient
from maskline.infra.embedded.stack import Stack

#: `just fuzz` sets these for the long run.
EXAMPLES = os.environ.get("MASKLINE_FUZZ_EXAMPLES", "8")
PHASES = os.environ.get("MASKLINE_FUZZ_PHASES", "examples,fuzzing")
BUDGET_S = int(os.environ.get("MASKLINE_FUZZ_SECONDS", "150"))
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(BUDGET_S + 360)]


def schemathesis(stack: Stack, *options: str) -> subprocess.CompletedProcess[str]:
    st = Path(sys.executable).parent / "st"
    argv = [
        str(st),
        "run",
        f"{stack.gateway_url}/schema/openapi.json",
        "--checks",
        "not_a_server_error",
        "-H",
        "Authorization: Bearer key-b",  # a tenant with nothing to lose to random deletes
        "--seed",
        "20261201",
        "--request-timeout",
        "60",
        "--no-color",
        *options,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=BUDGET_S + 300, env={**os.environ, "NO_COLOR": "1"})


def test_fuzzing_every_operation_finds_no_server_error(stack: Stack, other_tenant: JsonClient) -> None:
    try:
        done = schemathesis(stack, "--phases", PHASES, "--max-examples", EXAMPLES, "--max-time", str(BUDGET_S))
    finally:  # a random webhook it may have set would be called by every later job of tenant-b
        other_tenant.http.delete("/v1/webhooks")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    generated = re.search(r"(\d+) generated", done.stdout)
    assert generated is not None and int(generated.group(1)) > 100, done.stdout[-3000:]  # it really fuzzed
    assert "Server error" not in done.stdout
