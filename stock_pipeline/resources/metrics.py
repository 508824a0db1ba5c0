"""CloudWatch metrics of the pipeline, under one namespace (METRICS_NAMESPACE).

The alarms in infra/stack.yaml read these names. Publishing is best effort: a failure is
logged and never fails the run or sensor that publishes.
"""

import logging
from datetime import UTC, datetime

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from stock_pipeline.resources.aws import AwsResource

log = logging.getLogger(__name__)

# Every metric the pipeline publishes, with its CloudWatch unit.
METRICS = {
    "RecordsRead": "Count",  # Kinesis records one micro-batch consumed
    "RecordsWritten": "Count",  # ticks it wrote to raw/ticks
    "RecordsQuarantined": "Count",  # records it wrote to quarantine/ticks
    "MillisBehindLatest": "Milliseconds",  # how far the batch's end is behind the stream's tip
    "LatestQuotesAgeSeconds": "Seconds",  # since latest_quotes was last materialized
    "RunsFailed": "Count",  # Dagster runs that failed
}

# A metric must not hold up a micro-batch: fail fast rather than wait on a slow endpoint.
TIMEOUTS = Config(connect_timeout=2, read_timeout=5)


class MetricsResource(AwsResource):
    """Publishes the pipeline's metrics to CloudWatch (the emulator's, locally)."""

    namespace: str
    max_attempts: int = 2

    def publish(self, values: dict[str, float]) -> bool:
        """Publish `values` by metric name; whether CloudWatch took them (failures are logged)."""
        unknown = set(values) - set(METRICS)
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}; known: {sorted(METRICS)}")
        now = datetime.now(UTC)
        data = [
            {"MetricName": name, "Value": float(value), "Unit": METRICS[name], "Timestamp": now}
            for name, value in values.items()
        ]
        try:
            self.boto_client("cloudwatch", TIMEOUTS).put_metric_data(
                Namespace=self.namespace, MetricData=data
            )
        except (BotoCoreError, ClientError) as err:
            log.warning("metrics %s not published to CloudWatch: %s", sorted(values), err)
            return False
        return True
