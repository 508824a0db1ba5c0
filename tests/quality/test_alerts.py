"""Checks run after `minute_bars` updates; alerts reach SNS exactly once (read back from SQS)."""

import json
from datetime import UTC, datetime, timedelta
from io import StringIO

import boto3
import dagster as dg
import pytest

from stock_pipeline import fault_proxy
from stock_pipeline.defs.quality.checks import minute_bars_anomaly_checks
from stock_pipeline.emulator import free_port
from stock_pipeline.resources.alerts import AlertsResource, follow_alerts
from stock_pipeline.settings import get_settings
from tests.quality.conftest import (
    SESSION_OPEN,
    judge,
    minute_bars_stand_in,
    received_alerts,
    session_ticks,
)

FAULTS = ("price_jump", "volume_spike", "stale")
BAD_BAR = (  # gets high < low
    "update minute_bars set high = low - 1 where symbol = $s and minute_ts = $t",
    {"s": "AMZN", "t": SESSION_OPEN + timedelta(minutes=20)},
)


@dg.asset(deps=["minute_bars"])
def failing_mart() -> None:
    raise RuntimeError("boom")


def run_checks(alerts_resource, *assets, rules: dict | None = None) -> dg.ExecuteInProcessResult:
    """The rules' models on the bars `assets` write, then the checks, as a micro-batch runs them."""
    return judge(
        *assets,
        minute_bars_anomaly_checks,
        thresholds=rules,
        resources={"alerts": alerts_resource},
    )


def check_results(result) -> dict[str, dg.AssetCheckEvaluation]:
    """The checks on minute_bars (the dbt tests of the rules' own models left out)."""
    return {
        e.check_name: e
        for e in result.get_asset_check_evaluations()
        if e.asset_key == dg.AssetKey("minute_bars")
    }


@pytest.fixture(scope="module")
def faulty_ticks():
    return session_ticks(get_settings().symbols[:5], 40, 2.0, inject=FAULTS)


def test_each_kind_detected_once(alerts_resource, faulty_ticks):
    stand_in = minute_bars_stand_in(faulty_ticks, BAD_BAR)
    result = run_checks(alerts_resource, stand_in)

    checks = check_results(result)
    assert {name: c.passed for name, c in checks.items()} == {
        "price_jump": False,
        "volume_spike": False,
        "stale_feed": False,
        "impossible_data": False,
    }
    assert checks["impossible_data"].severity == dg.AssetCheckSeverity.ERROR
    assert checks["price_jump"].severity == dg.AssetCheckSeverity.WARN
    table = checks["stale_feed"].metadata["anomalies"].value
    assert [(r.data["symbol"], r.data["rule"], r.data["value"]) for r in table.records] == [
        ("NVDA", "stale_feed", 15.0)
    ]
    # Failing checks do not fail the run: it goes on to alert.
    assert result.success

    alerts = sorted((json.loads(m) for m in received_alerts()), key=lambda a: a["rule"])
    at = "2026-11-20T14:40:00Z"
    assert [(a["rule"], a["symbol"], a["event_time"], a["severity"]) for a in alerts] == [
        ("high_below_low", "AMZN", "2026-11-20T14:50:00Z", "ERROR"),
        ("price_jump", "AAPL", at, "WARN"),
        ("stale_feed", "NVDA", at, "WARN"),
        ("volume_spike", "MSFT", at, "WARN"),
    ]
    for alert in alerts:
        assert alert["kind"] == "anomaly" and alert["asset_key"] == "minute_bars"
        assert abs(alert["value"]) > alert["threshold"] or alert["rule"] == "stale_feed"
    assert alerts[0]["value"] == -1.0 and alerts[0]["threshold"] == 0.0
    assert alerts[2]["value"] == 15.0 and alerts[2]["threshold"] == 5.0


def test_sns_message_attributes_allow_filtering(alerts_resource, faulty_ticks):
    """A queue subscribed with a filter policy on severity receives only the ERROR alert."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic_arn = alerts_resource.topic_arn(sns)
    queue_url = sqs.create_queue(QueueName="errors-only")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"FilterPolicy": json.dumps({"severity": ["ERROR"], "symbol": ["AMZN"]})},
    )
    run_checks(alerts_resource, minute_bars_stand_in(faulty_ticks, BAD_BAR))

    out = StringIO()
    assert follow_alerts("errors-only", as_json=True, out=out, max_messages=10, wait_seconds=0) == 1
    assert json.loads(out.getvalue())["rule"] == "high_below_low"


def test_no_false_alarms_on_a_normal_trading_day(alerts_resource):
    """20 symbols, a full 390-minute session, default thresholds: nothing to report."""
    ticks = session_ticks(get_settings().symbols, 390, 3.0, seed=11)
    assert ticks["symbol"].nunique() == 20
    result = run_checks(alerts_resource, minute_bars_stand_in(ticks))
    assert all(c.passed for c in check_results(result).values())
    assert received_alerts() == []


def test_thresholds_are_run_config(alerts_resource, faulty_ticks):
    """Thresholds above the injected faults: the same session passes and alerts nothing."""
    lenient = {"price_jump_z": 500.0, "volume_spike_ratio": 100.0, "stale_minutes": 20}
    result = run_checks(alerts_resource, minute_bars_stand_in(faulty_ticks), rules=lenient)
    assert all(c.passed for c in check_results(result).values())
    assert received_alerts() == []


class CrashingSns:
    """An SNS client whose process 'dies' (a non-AWS error) before its n-th publish."""

    def __init__(self, client, crash_before: int):
        self.client, self.left = client, crash_before

    def __getattr__(self, name):
        return getattr(self.client, name)

    def publish(self, **kwargs):
        self.left -= 1
        if self.left == 0:
            raise RuntimeError("process died mid-delivery")
        return self.client.publish(**kwargs)


def test_rerun_and_retried_run_send_nothing_twice(
    alerts_resource, faulty_ticks, ledger, monkeypatch
):
    stand_in = minute_bars_stand_in(faulty_ticks)
    boto_client = AlertsResource.boto_client
    with monkeypatch.context() as patch:
        patch.setattr(
            AlertsResource,
            "boto_client",
            lambda self, service: (
                CrashingSns(boto_client(self, service), crash_before=3)
                if service == "sns"
                else boto_client(self, service)
            ),
        )
        crashed = run_checks(alerts_resource, stand_in)
    assert not crashed.success  # the check step failed after publishing two alerts
    assert len(received_alerts()) == 2
    assert len(ledger("pending")) == 1

    retried = run_checks(alerts_resource, stand_in)  # the retry sends only the third
    assert retried.success
    assert check_results(retried)["price_jump"].metadata["alerts_sent"].value == 1
    assert len(received_alerts()) == 1

    run_checks(alerts_resource, stand_in, failing_mart)  # re-runs, one of them failing
    run_checks(alerts_resource, stand_in)
    assert received_alerts() == []
    assert len(ledger("sent")) == 3 and ledger("pending") == set() and ledger("claims") == set()


def dead_endpoint() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


def test_sns_down_then_every_pending_alert_delivered_once(alerts_resource, faulty_ticks, ledger):
    """SNS refusing (topic gone): the checks complete, the alerts wait in the outbox."""
    sns = boto3.client("sns")
    topic_arn = alerts_resource.topic_arn(sns)
    (subscription,) = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    sns.delete_topic(TopicArn=topic_arn)
    stand_in = minute_bars_stand_in(faulty_ticks)

    down = run_checks(alerts_resource, stand_in)
    assert down.success  # the checks still completed...
    metadata = check_results(down)["volume_spike"].metadata
    assert metadata["alerts_pending"].value == 3  # ...and recorded the failure
    assert "not found" in metadata["alert_delivery_error"].value
    assert len(ledger("pending")) == 3 and ledger("sent") == set()

    # SNS is back: the same topic, and the stack's queue subscribed to it again.
    sns.create_topic(Name=alerts_resource.topic_name)
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=subscription["Endpoint"])
    run_checks(alerts_resource, stand_in)
    run_checks(alerts_resource, stand_in)
    alerts = [json.loads(m) for m in received_alerts()]
    assert sorted(a["rule"] for a in alerts) == ["price_jump", "stale_feed", "volume_spike"]
    assert ledger("pending") == set() and len(ledger("sent")) == 3


def test_endpoint_down_then_alerts_delivered_once(alerts_resource, faulty_ticks, ledger):
    """The whole AWS endpoint unreachable: the checks complete; the next evaluation delivers."""
    unreachable = AlertsResource(
        topic_name=alerts_resource.topic_name,
        ledger_bucket=alerts_resource.ledger_bucket,
        endpoint_url=dead_endpoint(),
        max_attempts=1,
    )
    stand_in = minute_bars_stand_in(faulty_ticks)
    down = run_checks(unreachable, stand_in)
    assert down.success
    metadata = check_results(down)["price_jump"].metadata
    assert metadata["alerts_pending"].value == 3 and metadata["alerts_sent"].value == 0
    assert "unreachable" in metadata["alert_delivery_error"].value

    run_checks(alerts_resource, stand_in)
    run_checks(alerts_resource, stand_in)
    assert len(received_alerts()) == 3
    assert len(ledger("sent")) == 3


def test_the_sent_ledger_holds_each_alert_as_published(alerts_resource, faulty_ticks):
    """`sent/` is what the API lists: the alert itself, its SNS message id and when it went out."""
    before = datetime.now(UTC)
    run_checks(alerts_resource, minute_bars_stand_in(faulty_ticks))
    published = {alert["alert_id"]: alert for alert in map(json.loads, received_alerts())}
    assert len(published) == 3

    sent = alerts_resource.sent_alerts()
    assert set(sent) == set(published)
    for alert_id, record in sent.items():
        assert {k: v for k, v in record.items() if k not in ("message_id", "sent_at")} == (
            published[alert_id]
        )
        assert record["message_id"]
        assert before <= datetime.fromisoformat(record["sent_at"]) <= datetime.now(UTC)

    run_checks(alerts_resource, minute_bars_stand_in(faulty_ticks))  # found again: sent once
    assert received_alerts() == []
    assert alerts_resource.sent_alerts(known=sent) == sent


def test_s3_faults_on_the_ledger_send_no_alert_twice(
    alerts_resource, moto_endpoint, faulty_ticks, ledger
):
    """S3 5xx and SlowDown on a share of the ledger's requests (the fault proxy in front of the
    alerts' clients only): the runs retry through them, and each alert goes out once."""
    proxy = fault_proxy.start(moto_endpoint, s3_error_rate=0.3, kinesis_throttle_rate=0, seed=7)
    faulty = AlertsResource(
        topic_name=alerts_resource.topic_name,
        ledger_bucket=alerts_resource.ledger_bucket,
        ledger_prefix=alerts_resource.ledger_prefix,
        endpoint_url=proxy.url,
    )
    stand_in = minute_bars_stand_in(faulty_ticks)
    try:
        runs = [run_checks(faulty, stand_in) for _ in range(3)]  # a run and two re-runs
    finally:
        proxy.shutdown()

    assert proxy.counts.s3_faults > 0
    assert all(run.success for run in runs)
    sent = [json.loads(message) for message in received_alerts()]
    assert sorted(alert["rule"] for alert in sent) == ["price_jump", "stale_feed", "volume_spike"]
    assert len(ledger("sent")) == 3 and ledger("pending") == set() and ledger("claims") == set()
