"""The gateway answers as its OpenAPI document says (schemathesis' response conformance checks): for
a sample of requests — every GET, and POSTs that are cheap to repeat and change nothing another
test reads — each status, media type, header and body is one its operation documents.

tests/services/gateway/test_openapi.py holds the document to the code without a server; this
compares it with what a running stack sends. test_fuzz.py looks for server errors.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from maskline.infra.embedded.stack import Stack

CHECKS = ("status_code_conformance", "content_type_conformance", "response_headers_conformance", "response_schema_conformance")
#: The POSTs sampled: an upload (content-addressed), a submission refused or admitted, and requests
#: that name things tenant-b does not have (answered 404 / 422, or a request for access nobody sees).
POSTS = ("segmentationsUpload", "segmentationsSubmit", "segmentationsReplay", "sharingAsk", "modelsMerge", "datasetsExpand")
EXAMPLES = os.environ.get("MASKLINE_CONFORMANCE_EXAMPLES", "5")
BUDGET_S = int(os.environ.get("MASKLINE_CONFORMANCE_SECONDS", "120"))
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(BUDGET_S + 300)]


def argv(stack: Stack) -> list[str]:
    posts = [arg for operation_id in POSTS for arg in ("--include-operation-id", operation_id)]
    return [
        str(Path(sys.executable).parent / "st"),
        "run",
        f"{stack.gateway_url}/schema/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--include-method",
        "GET",
        *posts,
        "-H",
        "Authorization: Bearer key-b",  # a tenant with nothing to lose
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        EXAMPLES,
        "--max-time",
        str(BUDGET_S),
        "--seed",
        "20261204",
        "--request-timeout",
        "60",
        "--no-color",
    ]


def test_sampled_answers_are_the_documented_ones(stack: Stack) -> None:
    env = {**os.environ, "NO_COLOR": "1"}
    done = subprocess.run(argv(stack), capture_output=True, text=True, timeout=BUDGET_S + 240, env=env)
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    generated = re.search(r"(\d+) generated", done.stdout)
    assert generated is not None and int(generated.group(1)) > 100, done.stdout[-3000:]  # it really asked
