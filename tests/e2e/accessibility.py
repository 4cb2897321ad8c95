"""axe-core, run in the page a browser test ends on: the serious and critical violations of WCAG
2.x A/AA rules and axe's best practices (tests/e2e/vendor/README.md says where axe comes from)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from selenium.webdriver.remote.webdriver import WebDriver

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
#: What fails a test: a violation that blocks or seriously hinders someone (axe's own impact scale).
FAILING = ("serious", "critical")


@cache
def _axe() -> str:
    return AXE.read_text()


def violations(b: WebDriver) -> list[dict[str, Any]]:
    """The page's serious and critical violations: rule id, impact, help and the elements' selectors."""
    b.execute_script(_axe())  # WebDriver's scripts run outside the page's Content-Security-Policy
    result: dict[str, Any] = b.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, { resultTypes: ['violations'] }).then(r => done(r), e => done({ error: String(e) }));"
    )
    assert "error" not in result, result
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in FAILING
    ]
