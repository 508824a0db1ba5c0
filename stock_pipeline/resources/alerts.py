"""Alerts: publish to the SNS topic exactly once, and read them back from the local SQS queue.

Delivery uses an outbox and a ledger in the lake bucket, one small S3 object per alert id:

    <prefix>/alerts/pending/<alert_id>.json   recorded before publishing (the outbox)
    <prefix>/alerts/claims/<alert_id>.json    held by the one delivery publishing it right now
    <prefix>/alerts/sent/<alert_id>.json      written only after SNS accepted the message: the
                                              alert, its SNS `message_id` and `sent_at`

S3 is durable, survives restarts and needs no write lock on the DuckDB warehouse, and the same
calls work on AWS unchanged. An alert already in `sent/` is never published again; one in
`pending/` is retried on every later delivery, so nothing is lost while SNS is down. Checks and
sensors deliver concurrently: a claim is an S3 conditional write (`If-None-Match: *`) that only
one of them can make, and `sent/` is re-read under the claim. The one remaining window is a
crash between SNS accepting a message and `sent/` being written: that alert is sent again once,
with the same `alert_id` for consumers to de-duplicate.
"""

import json
import logging
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from stock_pipeline.resources.aws import AwsResource

log = logging.getLogger(__name__)

AWS_ERRORS = (BotoCoreError, ClientError)
# A claim older than this was left by a delivery that crashed before publishing: take it over.
# Far longer than one SNS publish with botocore's retries takes.
CLAIM_TIMEOUT = timedelta(minutes=5)
# S3's answers to a conditional write when the object exists (or is being written).
CLAIM_TAKEN = ("PreconditionFailed", "ConditionalRequestConflict")


@dataclass(frozen=True)
class Alert:
    """One alert message. `alert_id` is its stable identity, e.g. `price_jump:AAPL:<minute>`."""

    alert_id: str
    kind: str  # "anomaly", "run_failure", "freshness"
    rule: str
    severity: str  # "WARN" or "ERROR"
    asset_key: str | None
    event_time: str  # ISO-8601 UTC
    symbol: str | None = None
    value: float | None = None
    threshold: float | None = None
    summary: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), allow_nan=False)

    def message_attributes(self) -> dict[str, dict[str, str]]:
        """Attributes for SNS filter policies (SNS rejects empty values, so those are left out)."""
        fields = {
            "kind": self.kind,
            "rule": self.rule,
            "severity": self.severity,
            "symbol": self.symbol,
            "asset_key": self.asset_key,
        }
        return {
            name: {"DataType": "String", "StringValue": value}
            for name, value in fields.items()
            if value
        }


@dataclass
class Delivery:
    """What one delivery attempt did: operators see these numbers in the check's metadata."""

    sent: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    error: str | None = None


class AlertsResource(AwsResource):
    """The SNS alerts topic (ARN resolved at run time) and the delivery ledger in S3."""

    topic_name: str
    ledger_bucket: str
    ledger_prefix: str = ""

    def _key(self, state: str, alert_id: str = "") -> str:
        name = f"{alert_id}.json" if alert_id else ""
        return "/".join(p.strip("/") for p in (self.ledger_prefix, "alerts", state, name) if p)

    def _ids(self, s3: Any, state: str) -> set[str]:
        prefix = self._key(state) + "/"
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.ledger_bucket, Prefix=prefix
        )
        return {
            obj["Key"][len(prefix) : -len(".json")]
            for page in pages
            for obj in page.get("Contents", [])
        }

    def sent_alerts(self, known: Mapping[str, dict] | None = None) -> dict[str, dict]:
        """Every alert in `sent/` by id: the alert, `message_id` and `sent_at`.

        A sent record never changes, so the records in `known` are reused and only new ones are
        read. Records from before `sent/` held the alert (only a message id) are left out.
        """
        known = known or {}
        s3 = self.boto_client("s3")
        records = {}
        for alert_id in self._ids(s3, "sent"):
            if alert_id in known:
                records[alert_id] = known[alert_id]
                continue
            body = s3.get_object(Bucket=self.ledger_bucket, Key=self._key("sent", alert_id))
            record = json.loads(body["Body"].read())
            if "rule" in record:
                records[alert_id] = record
            else:
                log.warning("alert ledger: %s holds no alert (written before sent/ did)", alert_id)
        return records

    def topic_arn(self, sns: Any) -> str:
        """The topic's ARN, looked up by name (no sns:CreateTopic needed at run time)."""
        for page in sns.get_paginator("list_topics").paginate():
            for topic in page["Topics"]:
                if topic["TopicArn"].rsplit(":", 1)[-1] == self.topic_name:
                    return topic["TopicArn"]
        raise LookupError(
            f"SNS topic {self.topic_name!r} not found; run `stock-pipeline provision`"
        )

    def publish(self, alerts: Iterable[Alert], unrecorded_fallback: bool = False) -> Delivery:
        """Queue every alert not sent before, then deliver everything pending.

        AWS failures are reported in the result, not raised. With SNS down the alerts stay in
        the outbox for the next delivery. With the ledger itself unreachable nothing can be
        recorded: anomalies are not sent, since the checks find them again next time; alerts
        nothing will raise again (a failed run) pass `unrecorded_fallback` and go straight to
        SNS instead, once, rather than never.
        """
        alerts = list(alerts)
        s3 = self.boto_client("s3")
        sent: set[str] = set()
        queued: set[str] = set()  # in the outbox: a later delivery sends them
        try:
            # Only to skip queueing what went out before; `_deliver` re-checks under its claim.
            sent = self._ids(s3, "sent") if alerts else set()
            for alert in alerts:
                if alert.alert_id not in sent:
                    s3.put_object(
                        Bucket=self.ledger_bucket,
                        Key=self._key("pending", alert.alert_id),
                        Body=alert.to_json().encode(),
                        ContentType="application/json",
                    )
                    queued.add(alert.alert_id)
            return self._deliver(s3, sent)
        except AWS_ERRORS as err:  # what reached the outbox goes out with a later delivery
            delivery = Delivery(
                pending=sorted({a.alert_id for a in alerts} - sent),
                error=f"alert ledger unreachable: {err}",
            )
            if unrecorded_fallback:
                unrecorded = [a for a in alerts if a.alert_id not in sent | queued]
                self._send_unrecorded(unrecorded, delivery)
            return delivery

    def _send_unrecorded(self, alerts: list[Alert], delivery: Delivery) -> None:
        """Publish straight to SNS, with no ledger to record it in."""
        if not alerts:
            return
        sns = self.boto_client("sns")
        try:
            topic_arn = self.topic_arn(sns)
            for alert in alerts:
                self._send(sns, topic_arn, alert)
                delivery.pending.remove(alert.alert_id)
                delivery.sent.append(alert.alert_id)
        except (*AWS_ERRORS, LookupError) as err:
            delivery.error += f"; SNS: {err}"

    @staticmethod
    def _send(sns: Any, topic_arn: str, alert: Alert) -> str:
        """Publish one alert; SNS's message id."""
        return sns.publish(
            TopicArn=topic_arn,
            Message=alert.to_json(),
            MessageAttributes=alert.message_attributes(),
        )["MessageId"]

    def _last_modified(self, s3: Any, key: str) -> datetime | None:
        """When the object was written, or None if there is none."""
        try:
            return s3.head_object(Bucket=self.ledger_bucket, Key=key)["LastModified"]
        except ClientError as err:
            if err.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def _claim(self, s3: Any, alert_id: str) -> bool:
        """Whether this delivery won the right to publish `alert_id` (until it releases it)."""
        key = self._key("claims", alert_id)
        for _ in range(2):
            try:
                s3.put_object(Bucket=self.ledger_bucket, Key=key, Body=b"", IfNoneMatch="*")
                return True
            except ClientError as err:
                if err.response["Error"]["Code"] not in CLAIM_TAKEN:
                    raise
            claimed_at = self._last_modified(s3, key)
            if claimed_at is not None and datetime.now(UTC) - claimed_at < CLAIM_TIMEOUT:
                return False  # another delivery is publishing it
            if claimed_at is not None:
                s3.delete_object(Bucket=self.ledger_bucket, Key=key)
        return False

    def _deliver(self, s3: Any, sent: set[str]) -> Delivery:
        pending = sorted(self._ids(s3, "pending"))
        delivery = Delivery(pending=list(pending))
        sns = self.boto_client("sns")
        try:
            topic_arn = self.topic_arn(sns) if pending else ""
        except (*AWS_ERRORS, LookupError) as err:
            delivery.error = str(err)
            return delivery
        for alert_id in pending:
            pending_key = self._key("pending", alert_id)
            if alert_id in sent:  # a crash came after `sent/` was written: just clean up
                s3.delete_object(Bucket=self.ledger_bucket, Key=pending_key)
                delivery.pending.remove(alert_id)
                continue
            if not self._claim(s3, alert_id):
                continue
            try:
                # Read under the claim: another delivery may have sent it since `sent` was listed.
                if self._last_modified(s3, self._key("sent", alert_id)) is None:
                    body = s3.get_object(Bucket=self.ledger_bucket, Key=pending_key)["Body"]
                    alert = Alert(**json.loads(body.read()))
                    try:
                        message_id = self._send(sns, topic_arn, alert)
                    except AWS_ERRORS as err:
                        # SNS is down or refusing: keep this and the rest pending for next time.
                        delivery.error = str(err)
                        break
                    record = {
                        **asdict(alert),
                        "message_id": message_id,
                        "sent_at": datetime.now(UTC).isoformat(),
                    }
                    s3.put_object(
                        Bucket=self.ledger_bucket,
                        Key=self._key("sent", alert_id),
                        Body=json.dumps(record, allow_nan=False).encode(),
                        ContentType="application/json",
                    )
                    delivery.sent.append(alert_id)
                s3.delete_object(Bucket=self.ledger_bucket, Key=pending_key)
                delivery.pending.remove(alert_id)
            finally:
                s3.delete_object(Bucket=self.ledger_bucket, Key=self._key("claims", alert_id))
        return delivery


def format_alert(alert: dict[str, Any]) -> str:
    """One human-readable line per alert."""
    measured = ""
    if alert.get("value") is not None:
        measured = f" value={alert['value']:.4g} threshold={alert['threshold']:.4g}"
    return (
        f"{alert['event_time']} {alert['severity']:<5} {alert['rule']:<17} "
        f"{alert.get('symbol') or '-':<6}{measured} asset={alert.get('asset_key') or '-'}"
        f"{' | ' + alert['summary'] if alert.get('summary') else ''}"
    )


def _alert_json(body: str) -> str:
    """The published message: SQS bodies are SNS envelopes unless raw delivery is on."""
    envelope = json.loads(body)
    if envelope.get("Type") == "Notification" and "Message" in envelope:
        return envelope["Message"]
    return body


def follow_alerts(
    queue_name: str,
    as_json: bool,
    out: TextIO = sys.stdout,
    max_messages: int | None = None,
    wait_seconds: int = 20,
    peek: bool = False,
) -> int:
    """Long-poll the queue subscribed to the alerts topic, print and delete each alert.

    With `max_messages` unset, follow until Ctrl-C; otherwise stop after that many alerts or at
    the first poll that comes back empty (the queue is drained). With `peek`, print the alerts
    waiting now and leave them on the queue. Returns the number printed.
    """
    sqs = AwsResource().boto_client("sqs")
    queue_url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    count = 0
    seen: list[dict] = []
    try:
        while max_messages is None or count < max_messages:
            batch_size = 10 if max_messages is None else min(10, max_messages - count)
            messages = sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=batch_size,
                WaitTimeSeconds=0 if peek else wait_seconds,
            ).get("Messages", [])
            if not messages and (peek or max_messages is not None):
                break
            for message in messages:
                alert_json = _alert_json(message["Body"])
                print(alert_json if as_json else format_alert(json.loads(alert_json)), file=out)
                out.flush()
                count += 1
                if peek:  # hidden while the rest is read, then shown again below
                    seen.append(message)
                else:
                    # Deleted only once printed: an interrupted reader shows it again, never
                    # loses it.
                    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    except KeyboardInterrupt:
        pass
    finally:
        for start in range(0, len(seen), 10):
            sqs.change_message_visibility_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for n, m in enumerate(seen[start : start + 10])
                ],
            )
    return count
