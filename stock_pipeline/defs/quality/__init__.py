"""Quality: anomaly checks on the marts, alerts to SNS exactly once, pipeline-health alerts."""

import dagster as dg

from stock_pipeline.defs.quality.checks import minute_bars_anomaly_checks
from stock_pipeline.defs.quality.health import latest_quotes_freshness_sensor, run_failure_sensor
from stock_pipeline.resources.alerts import AlertsResource

defs = dg.Definitions(
    asset_checks=[minute_bars_anomaly_checks],
    sensors=[run_failure_sensor, latest_quotes_freshness_sensor],
    resources={
        "alerts": AlertsResource(
            topic_name=dg.EnvVar("ALERTS_TOPIC"),
            ledger_bucket=dg.EnvVar("LAKE_BUCKET"),
            ledger_prefix=dg.EnvVar("LAKE_PREFIX"),
        ),
    },
)
