"""The sent alerts, from the alert ledger in the lake bucket, re-listed at most once a second."""

import threading
import time
from datetime import datetime

from stock_pipeline.resources.alerts import AWS_ERRORS, AlertsResource
from stock_pipeline.settings import get_settings

LIST_EVERY_SECONDS = 1.0


class LedgerError(Exception):
    """The alert ledger cannot be read."""


class SentAlerts:
    def __init__(self, resource: AlertsResource | None = None):
        self._resource = resource or AlertsResource(
            topic_name=get_settings().alerts_topic,
            ledger_bucket=get_settings().lake_bucket,
            ledger_prefix=get_settings().lake_prefix,
        )
        self._lock = threading.Lock()
        self._records: dict[str, dict] = {}
        self._newest_first: list[dict] = []
        self._listed_at = float("-inf")

    def newest_first(self) -> list[dict]:
        """Every sent alert, newest event time first (then newest sent)."""
        with self._lock:
            if time.monotonic() - self._listed_at >= LIST_EVERY_SECONDS:
                try:
                    self._records = self._resource.sent_alerts(known=self._records)
                except AWS_ERRORS as err:
                    raise LedgerError(f"alert ledger unreachable: {err}") from err
                self._newest_first = sorted(
                    self._records.values(),
                    key=lambda a: (_instant(a["event_time"]), _instant(a["sent_at"])),
                    reverse=True,
                )
                self._listed_at = time.monotonic()
            return self._newest_first


def _instant(iso: str) -> datetime:
    return datetime.fromisoformat(iso)
