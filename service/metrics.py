"""Prometheus metrics at ``GET /metrics`` (service-contract.md §11), with prometheus_client.

Request counts and latency by endpoint, service, hook and status; FHIR fetch durations and failures by outcome;
cards by topic; feedback by outcome; database failures by reason. Every label value comes from a fixed
vocabulary (route rules, service ids, hook names, status codes, reason codes): no patient data, ids or tokens.

Under gunicorn every worker counts in its own process; ``gunicorn.conf.py`` sets ``PROMETHEUS_MULTIPROC_DIR``
so that ``/metrics``, whichever worker answers, reports the sum over all workers (prometheus_client's
multiprocess mode).
"""

from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

from .discovery import SERVICES

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 30.0)

REQUESTS = Counter("hcc_cds_requests_total", "HTTP requests answered",
                   ["endpoint", "service", "hook", "status"])
LATENCY = Histogram("hcc_cds_request_duration_seconds", "Time from arrival in the app to the response",
                    ["endpoint", "service", "hook"], buckets=_LATENCY_BUCKETS)
FHIR_FETCHES = Histogram("hcc_cds_fhir_fetch_duration_seconds", "Duration of one hook call's FHIR fetches",
                         ["outcome"], buckets=_LATENCY_BUCKETS)
FHIR_FAILURES = Counter("hcc_cds_fhir_fetch_failures_total", "FHIR queries that failed, by reason", ["reason"])
CARDS = Counter("hcc_cds_cards_total", "Cards returned, by topic", ["topic"])
FEEDBACK = Counter("hcc_cds_feedback_total", "Feedback items received, by what became of them", ["outcome"])
DATABASE_ERRORS = Counter("hcc_cds_database_errors_total", "Database operations that failed, by reason",
                          ["reason"])

_HOOK_OF = {service_id: service.hook for service_id, service in SERVICES.items()}
_KNOWN_TOPICS = frozenset({"second-line-options", "data-quality", "clinical-trials", "order-check"})


def count_cards(cards: list[dict]) -> None:
    for card in cards:
        topic = ((card.get("source") or {}).get("topic") or {}).get("code") if isinstance(card, dict) else None
        CARDS.labels(topic=topic if topic in _KNOWN_TOPICS else "other").inc()


def render() -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        data = generate_latest(registry)
    else:
        data = generate_latest()
    return Response(data, mimetype=CONTENT_TYPE_LATEST.split(";")[0],
                    headers={"Content-Type": CONTENT_TYPE_LATEST})


def init_app(app: Flask) -> None:
    app.add_url_rule("/metrics", "metrics", render, methods=["GET"])

    @app.before_request
    def _started() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        if endpoint == "/metrics":
            return response
        service = g.get("service_id")
        service = service if service in _HOOK_OF else "-"
        hook = _HOOK_OF.get(service, "-")
        REQUESTS.labels(endpoint=endpoint, service=service, hook=hook, status=str(response.status_code)).inc()
        started = g.get("metrics_started")
        if started is not None:
            LATENCY.labels(endpoint=endpoint, service=service, hook=hook).observe(time.perf_counter() - started)
        return response
