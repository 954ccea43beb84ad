# -*- test-case-name: tests.test_operations -*-
"""
The server's Prometheus metrics, in a registry of their own.
"""

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_ENDPOINTS = frozenset({"policy", "callback", "uploads", "limits", "oss", "healthz", "readyz", "metrics"})


class Metrics:
    """
    Everything the server counts and times.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # memory, CPU, open files
        self.grants = Counter(
            "osscallback_grants", "Upload grants asked for, by outcome "
            "(issued, or the refusal's error code).", ["outcome"], registry=self.registry,
        )
        self.callbacks = Counter(
            "osscallback_callbacks", "OSS callbacks, by outcome (recorded, or the "
            "refusal's error code).", ["outcome"], registry=self.registry,
        )
        self.key_fetches = Counter(
            "osscallback_key_fetches", "Public key downloads, by outcome (ok, failed).",
            ["outcome"], registry=self.registry,
        )
        self.key_cache = Counter(
            "osscallback_key_cache", "Public key cache lookups (hit, miss).",
            ["result"], registry=self.registry,
        )
        self.latency = Histogram(
            "osscallback_request_seconds", "Time from request to answer, by endpoint.",
            ["endpoint"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.ledger_writes = Histogram(
            "osscallback_ledger_write_seconds", "Time to commit an upload record.",
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.outbox = Gauge(
            "osscallback_webhook_outbox_depth", "Webhook deliveries waiting.",
            registry=self.registry,
        )
        self._children: dict[tuple[Any, str], Any] = {}

    def _child(self, metric: Counter | Histogram, label: str) -> Any:
        # prometheus_client's labels() validates and locks on every call;
        # the children are looked up once each.
        child = self._children.get((metric, label))
        if child is None:
            child = self._children[metric, label] = metric.labels(label)
        return child

    def count(self, counter: Counter, label: str) -> None:
        """
        Add one to C{counter} under C{label}.
        """
        self._child(counter, label).inc()

    def time(self, path: bytes, seconds: float) -> None:
        """
        Record how long a request for C{path} took, under its endpoint.
        """
        self._child(self.latency, self.endpoint(path)).observe(seconds)

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
