"""The outbox and ledger: concurrent deliveries, crashed deliveries, and reading alerts back."""

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from io import StringIO

import boto3

from stock_pipeline.resources import alerts as alerts_module
from stock_pipeline.resources.alerts import Alert, follow_alerts
from stock_pipeline.settings import get_settings
from tests.quality.conftest import received_alerts
from tests.sample_alerts import anomaly_alert


def price_jump(symbol: str) -> Alert:
    return anomaly_alert(
        "price_jump", symbol, datetime(2026, 11, 20, 14, 40), value=35.79, threshold=10.0
    )


def test_concurrent_deliveries_publish_each_alert_once(alerts_resource, ledger):
    """Checks and sensors deliver at the same time: each alert still goes out once."""
    alerts = [price_jump(symbol) for symbol in ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL")]
    with ThreadPoolExecutor(max_workers=6) as pool:
        deliveries = list(pool.map(lambda _: alerts_resource.publish(alerts), range(6)))
    assert sum(len(d.sent) for d in deliveries) == 5
    assert len(received_alerts()) == 5
    assert len(ledger("sent")) == 5 and ledger("pending") == set() and ledger("claims") == set()


def test_a_claim_left_by_a_crashed_delivery_is_taken_over_after_its_timeout(
    alerts_resource, ledger, monkeypatch
):
    s3 = boto3.client("s3")
    s3.put_object(
        Bucket=get_settings().lake_bucket,
        Key="alerts/claims/price_jump:AAPL:2026-11-20T14:40Z.json",
        Body=b"",
    )
    assert alerts_resource.publish([price_jump("AAPL")]).sent == []  # claimed by someone else
    assert received_alerts() == []

    monkeypatch.setattr(alerts_module, "CLAIM_TIMEOUT", timedelta(0))
    assert alerts_resource.publish([]).sent == ["price_jump:AAPL:2026-11-20T14:40Z"]
    assert len(received_alerts()) == 1
    assert ledger("claims") == set() and ledger("pending") == set()


def test_follow_alerts_prints_one_line_per_alert_and_deletes_it(alerts_resource):
    alerts_resource.publish([price_jump("AAPL")])
    out = StringIO()
    assert (
        follow_alerts(get_settings().alerts_queue, False, out, max_messages=5, wait_seconds=0) == 1
    )
    assert out.getvalue() == (
        "2026-11-20T14:40:00Z WARN  price_jump        AAPL   value=35.79 threshold=10 "
        "asset=minute_bars\n"
    )
    assert received_alerts() == []  # deleted once printed


def test_peek_prints_the_waiting_alerts_and_leaves_them_queued(alerts_resource):
    alerts_resource.publish([price_jump(symbol) for symbol in ("AAPL", "MSFT", "NVDA")])
    queue = get_settings().alerts_queue
    peeked, again = StringIO(), StringIO()
    assert follow_alerts(queue, False, peeked, wait_seconds=0, peek=True) == 3
    assert follow_alerts(queue, False, again, wait_seconds=0, peek=True) == 3
    assert sorted(again.getvalue().splitlines()) == sorted(peeked.getvalue().splitlines())
    followed = StringIO()
    assert follow_alerts(queue, False, followed, max_messages=10, wait_seconds=0) == 3
    assert follow_alerts(queue, False, StringIO(), wait_seconds=0, peek=True) == 0
