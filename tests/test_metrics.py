"""Prometheus metrics: names, labels and values in the rendered text."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chatbot.metrics import LATENCY_BUCKETS, Metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = metrics.render()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def test_render_returns_text_exposition_and_its_content_type():
    body, content_type = Metrics().render()
    assert content_type.startswith("text/plain; version=")
    assert isinstance(body, bytes)
    assert b"# TYPE chatbot_messages_in_total counter" in body


def test_counters_and_gauges_have_their_names_labels_and_values():
    metrics = Metrics()
    metrics.connections_open.inc(3)
    metrics.connections_open.dec()
    metrics.sessions_live.set(7)
    metrics.messages_in.labels(kind="message").inc(2)
    metrics.messages_in.labels(kind="action").inc()
    metrics.messages_out.inc(4)
    metrics.transitions.labels(flow="order").inc(5)
    metrics.errors.labels(code="bad_frame").inc()
    metrics.logins.labels(result="throttled").inc()
    metrics.resumes.inc()
    metrics.resent_replies.inc(2)

    found = samples(metrics)
    assert found[("chatbot_connections_open", ())] == 2
    assert found[("chatbot_sessions_live", ())] == 7
    assert found[("chatbot_messages_in_total", (("kind", "message"),))] == 2
    assert found[("chatbot_messages_in_total", (("kind", "action"),))] == 1
    assert found[("chatbot_messages_out_total", ())] == 4
    assert found[("chatbot_transitions_total", (("flow", "order"),))] == 5
    assert found[("chatbot_errors_total", (("code", "bad_frame"),))] == 1
    assert found[("chatbot_logins_total", (("result", "throttled"),))] == 1
    assert found[("chatbot_resumes_total", ())] == 1
    assert found[("chatbot_resent_replies_total", ())] == 2


def test_known_label_values_start_at_zero():
    found = samples(Metrics())
    for kind in ("message", "action"):
        assert found[("chatbot_messages_in_total", (("kind", kind),))] == 0
    for result in ("ok", "failed", "throttled"):
        assert found[("chatbot_logins_total", (("result", result),))] == 0


@pytest.mark.parametrize(
    "attribute, name",
    [
        ("reply_latency", "chatbot_reply_latency_seconds"),
        ("db_commit", "chatbot_db_commit_seconds"),
    ],
)
def test_histograms_count_into_buckets_from_a_tenth_of_a_millisecond_to_a_second(attribute, name):
    metrics = Metrics()
    histogram = getattr(metrics, attribute)
    for seconds in (0.00005, 0.0003, 0.002, 0.04, 0.7, 3.0):
        histogram.observe(seconds)

    found = samples(metrics)
    assert LATENCY_BUCKETS[0] == 0.0001 and LATENCY_BUCKETS[-1] == 1.0
    bounds = ("0.0001", "0.0005", "0.0025", "0.05", "1.0", "+Inf")
    bucket = {le: found[(f"{name}_bucket", (("le", le),))] for le in bounds}
    assert bucket == {"0.0001": 1, "0.0005": 2, "0.0025": 3, "0.05": 4, "1.0": 5, "+Inf": 6}
    assert found[(f"{name}_count", ())] == 6
    assert found[(f"{name}_sum", ())] == pytest.approx(3.74235)


def test_each_instance_counts_on_its_own():
    first, second = Metrics(), Metrics()
    first.messages_out.inc()
    assert samples(first)[("chatbot_messages_out_total", ())] == 1
    assert samples(second)[("chatbot_messages_out_total", ())] == 0


# Run in a process of its own: sharing metrics between processes is set once per process, as
# `chatbot serve --workers N` sets it in the supervisor before it forks.
SHARED_DB_FAILING = """
import os, sys, tempfile
from prometheus_client.parser import text_string_to_metric_families
from chatbot import metrics as shared

def failing_shown(metrics):
    body, _ = metrics.render()
    return {sample.name: sample.value for family in text_string_to_metric_families(body.decode())
            for sample in family.samples}["chatbot_db_failing"]

shared.share_between_processes(tempfile.mkdtemp())
child = os.fork()
if child == 0:  # a worker whose database is fine, and says so
    other = shared.Metrics()
    other.follow_db_failing(lambda: False)
    other.refresh()
    os._exit(0)
os.waitpid(child, 0)
failing = [True]
metrics = shared.Metrics()
metrics.follow_db_failing(lambda: failing[0])
assert failing_shown(metrics) == 1.0, "a worker whose database fails shows in any worker's scrape"
failing[0] = False
assert failing_shown(metrics) == 0.0

# A Python program the worker starts counts on its own, not into the worker's metrics.
import subprocess
metrics.messages_out.inc()
subprocess.run([sys.executable, "-c", "from prometheus_client import Counter; "
                "Counter('chatbot_messages_out', 'replies').inc(1000)"], check=True)
body, _ = metrics.render()
assert b"chatbot_messages_out_total 1.0" in body, body
metrics.errors.labels(code="late").inc()  # a label value first seen now still counts
assert b'chatbot_errors_total{code="late"} 1.0' in metrics.render()[0]
"""


def test_shared_between_workers_the_database_failing_gauge_shows_any_worker_failing_and_children_count_apart():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", SHARED_DB_FAILING], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
