"""``/metrics``: the outbox backlog, read from the database at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

import structlog
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tenantops.db import Database
from tenantops.events.outbox import backlog

log = structlog.get_logger("tenantops.events")


class OutboxCollector(Collector):
    """Events waiting for the broker or the webhooks, and deliveries pending or dead."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self.db.read() as session:
                counts = backlog(session)
        except Exception:  # a scrape must answer even when the database does not
            log.warning("could not read the outbox backlog", exc_info=True)
            return
        events = GaugeMetricFamily(
            "tenantops_events_backlog",
            "Events in the outbox not yet handed on, by stage",
            labels=["stage"],
        )
        events.add_metric(["unpublished"], counts["unpublished"])
        events.add_metric(["undispatched"], counts["undispatched"])
        yield events
        deliveries = GaugeMetricFamily(
            "tenantops_webhook_deliveries",
            "Webhook deliveries by status (pending: still to be tried; dead: gave up)",
            labels=["status"],
        )
        deliveries.add_metric(["pending"], counts["deliveries_pending"])
        deliveries.add_metric(["dead"], counts["deliveries_dead"])
        yield deliveries
