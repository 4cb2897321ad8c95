"""structlog JSON logs; job id and trace id are bound per message by the consumer runtime."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

Logger = structlog.stdlib.BoundLogger


def configure(service: str, level: str = "info", instance: str = "") -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=level.upper())

    def add_process(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        # Not a context variable: the gateway starts each request from an empty context.
        event.setdefault("service", service)
        event.setdefault("instance", instance)
        return event

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_process,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def get(name: str | None = None) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
