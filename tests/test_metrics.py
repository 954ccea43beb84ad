"""
Tests for L{osscallback.metrics}: the plain counts and timings come out as
the Prometheus families prometheus_client's own counters and histograms
would give.
"""

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from osscallback.metrics import _LATENCY_BUCKETS, Metrics


def samples(text: bytes, name: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """
    The samples of the family C{name} in an exposition, by sample name and
    labels.
    """
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        if family.name == name
        for sample in family.samples
    }


class MetricsTests(SynchronousTestCase):
    """
    L{Metrics} counts and times without prometheus_client's locks.
    """

    def test_counts(self) -> None:
        """
        Each counted outcome is a C{_total} sample with its count.
        """
        metrics = Metrics()
        for outcome in ("issued", "issued", "bad_size"):
            metrics.grants.add(outcome)
        self.assertEqual(
            samples(metrics.exposition(), "osscallback_grants"),
            {
                ("osscallback_grants_total", (("outcome", "issued"),)): 2.0,
                ("osscallback_grants_total", (("outcome", "bad_size"),)): 1.0,
            },
        )

    def test_timingsMatchPrometheusHistogram(self) -> None:
        """
        Request times, including ones exactly on a bucket's bound and past
        the last, give the buckets, count and sum a prometheus_client
        Histogram gives for the same observations.
        """
        observations = [0.0005, 0.001, 0.003, 0.0025, 5.0, 7.5, 0.2]
        metrics = Metrics()
        registry = CollectorRegistry()
        reference = Histogram(
            "osscallback_request_seconds", "reference", ["endpoint"],
            buckets=_LATENCY_BUCKETS, registry=registry,
        )
        for seconds in observations:
            metrics.time(b"/policy", seconds)
            reference.labels("policy").observe(seconds)

        ours = samples(metrics.exposition(), "osscallback_request_seconds")
        theirs = samples(generate_latest(registry), "osscallback_request_seconds")
        theirs = {key: value for key, value in theirs.items() if not key[0].endswith("_created")}
        self.assertEqual(ours, theirs)

    def test_unlabelledTimings(self) -> None:
        """
        The ledger's write times have no label.
        """
        metrics = Metrics()
        metrics.ledger_writes.observe(0.02)
        found = samples(metrics.exposition(), "osscallback_ledger_write_seconds")
        self.assertEqual(found["osscallback_ledger_write_seconds_count", ()], 1.0)
        self.assertEqual(found["osscallback_ledger_write_seconds_bucket", (("le", "0.01"),)], 0.0)
        self.assertEqual(found["osscallback_ledger_write_seconds_bucket", (("le", "0.025"),)], 1.0)
