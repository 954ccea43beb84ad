# -*- test-case-name: tests.test_operations -*-
"""
The server's Prometheus metrics, in a registry of their own.

Counts and timings are plain numbers, kept in the reactor's thread, and
turned into Prometheus families only when C{/metrics} is read: every
request counts or times something, and prometheus_client's own counters
and histograms take a lock each time.
"""

from bisect import bisect_left
from typing import Iterator

from prometheus_client import CollectorRegistry, Gauge, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_ENDPOINTS = frozenset({"policy", "callback", "uploads", "limits", "oss", "healthz", "readyz", "metrics"})


class Tally(Collector):
    """
    A counter by one label.
    """

    def __init__(self, name: str, documentation: str, label: str) -> None:
        self._name = name
        self._documentation = documentation
        self._label = label
        self.counts: dict[str, int] = {}

    def add(self, value: str) -> None:
        """
        Count one under the label's C{value}.
        """
        self.counts[value] = self.counts.get(value, 0) + 1

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._documentation, labels=[self._label])
        for value, count in self.counts.items():
            family.add_metric([value], count)
        yield family


class Timings(Collector):
    """
    A histogram of durations, by one label or none.
    """

    def __init__(self, name: str, documentation: str, label: str | None = None,
                 buckets: tuple[float, ...] = _LATENCY_BUCKETS) -> None:
        self._name = name
        self._documentation = documentation
        self._label = label
        self._bounds = buckets
        # Per label value: the observations in each bucket (the last one
        # past every bound), and their sum.
        self._series: dict[str, tuple[list[int], list[float]]] = {}

    def observe(self, seconds: float, value: str = "") -> None:
        """
        Count a duration of C{seconds} under the label's C{value}.
        """
        series = self._series.get(value)
        if series is None:
            series = self._series[value] = ([0] * (len(self._bounds) + 1), [0.0])
        series[0][bisect_left(self._bounds, seconds)] += 1
        series[1][0] += seconds

    def collect(self) -> Iterator[Metric]:
        labels = [] if self._label is None else [self._label]
        family = HistogramMetricFamily(self._name, self._documentation, labels=labels)
        for value, (counts, total) in self._series.items():
            cumulative, buckets = 0, []
            for bound, count in zip((*map(str, self._bounds), "+Inf"), counts):
                cumulative += count
                buckets.append((bound, cumulative))
            family.add_metric([value] if labels else [], buckets, total[0])
        yield family


class Metrics:
    """
    Everything the server counts and times.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # memory, CPU, open files
        self.grants = Tally(
            "osscallback_grants", "Upload grants asked for, by outcome "
            "(issued, or the refusal's error code).", "outcome",
        )
        self.callbacks = Tally(
            "osscallback_callbacks", "OSS callbacks, by outcome (recorded, or the "
            "refusal's error code).", "outcome",
        )
        self.key_fetches = Tally(
            "osscallback_key_fetches", "Public key downloads, by outcome (ok, failed).",
            "outcome",
        )
        self.key_cache = Tally(
            "osscallback_key_cache", "Public key cache lookups (hit, miss).", "result",
        )
        self.latency = Timings(
            "osscallback_request_seconds", "Time from request to answer, by endpoint.",
            "endpoint",
        )
        self.ledger_writes = Timings(
            "osscallback_ledger_write_seconds", "Time to commit an upload record.",
        )
        for collector in (self.grants, self.callbacks, self.key_fetches, self.key_cache,
                          self.latency, self.ledger_writes):
            self.registry.register(collector)
        self.outbox = Gauge(
            "osscallback_webhook_outbox_depth", "Webhook deliveries waiting.",
            registry=self.registry,
        )

    def time(self, path: bytes, seconds: float) -> None:
        """
        Record how long a request for C{path} took, under its endpoint.
        """
        self.latency.observe(seconds, self.endpoint(path))

    def endpoint(self, path: bytes) -> str:
        """
        The endpoint label of a request path: its first segment if it is an
        API endpoint, otherwise C{client} (the static files).
        """
        first = path.split(b"/", 2)[1].decode("latin-1") if path.count(b"/") else ""
        return first if first in _ENDPOINTS else "client"

    def exposition(self) -> bytes:
        """
        The metrics in Prometheus text format.
        """
        return generate_latest(self.registry)
