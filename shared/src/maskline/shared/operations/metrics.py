"""A worker's own Prometheus metrics, served at `/metrics` on its probe port (MASKLINE_HEALTH_PORT).

Each instance reports only what it did itself — messages by outcome and busy time per consumer,
whether a consumer waits for a dependency, its build and its process (CPU, memory, open files) —
so summing over replicas is right. Queue depths are a property of the stream, not of an instance:
the gateway reports those once per replica (aggregate them with `max`). Every label is bounded:
service and consumer names come from the system table, outcomes from a fixed list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from maskline.shared.version import CODE_VERSION

OUTCOMES = ("processed", "failed", "retried", "dead_lettered", "skipped", "held")


class BuildInfo(Collector):
    """`maskline_build_info{service, version}` 1: which code an instance runs (every service's /metrics)."""

    def __init__(self, service: str) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("maskline_build_info", "The running code's version", labels=["service", "version"])
        info.add_metric([self.service, CODE_VERSION], 1)
        yield info


class _Consumers(Collector):
    def __init__(self, service: str, consumers: Callable[[], Sequence[Any]]) -> None:
        self.service = service
        self.consumers = consumers

    def collect(self) -> Iterator[Metric]:
        messages = CounterMetricFamily(
            "maskline_consumer_messages", "Messages this instance handled, by outcome", labels=["service", "consumer", "outcome"]
        )
        busy = CounterMetricFamily(
            "maskline_consumer_busy_seconds", "Time this instance's handlers spent on messages", labels=["service", "consumer"]
        )
        paused = GaugeMetricFamily(
            "maskline_consumer_waiting",
            "1 while the consumer waits for a dependency (it fetches nothing)",
            labels=["service", "consumer"],
        )
        for consumer in self.consumers():
            stats, durable = consumer.stats, consumer.spec.durable
            for outcome in OUTCOMES:
                messages.add_metric([self.service, durable, outcome], getattr(stats, outcome))
            busy.add_metric([self.service, durable], stats.busy_s)
            paused.add_metric([self.service, durable], 1 if stats.paused else 0)
        yield from (messages, busy, paused)


class WorkerMetrics:
    def __init__(self, service: str, consumers: Callable[[], Sequence[Any]], extra: Sequence[Collector] = ()) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(BuildInfo(service))
        self.registry.register(_Consumers(service, consumers))
        for collector in extra:  # the service's own (audit: per model version)
            self.registry.register(collector)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
