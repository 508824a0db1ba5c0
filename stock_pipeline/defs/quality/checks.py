"""Anomaly checks on `minute_bars`: they run with every materialization of the mart.

No check here sets an automation condition, so Dagster adds them to every run that
materializes `minute_bars` (a job, a sensor or declarative automation) and runs them after it.

The marts are built in the same dbt step as `minute_bars`, so what blocks them on impossible data
is dbt itself: its ERROR tests on `minute_bars` run between the models, and dbt skips the marts
when one fails. The `impossible_data` check here lists the bars those tests reject and alerts on
each, once.
"""

from collections.abc import Iterator

import dagster as dg
import pandas as pd

from stock_pipeline.defs.quality.rules import CHECK, SEVERITY, AnomalyRules, find_anomalies
from stock_pipeline.resources.alerts import Alert, AlertsResource
from stock_pipeline.resources.warehouse import connect

MINUTE_BARS = dg.AssetKey("minute_bars")
CHECK_SEVERITY = {check: dg.AssetCheckSeverity(SEVERITY[rule]) for rule, check in CHECK.items()}
# Most anomalies listed in one check's metadata table (the count is always complete).
TABLE_ROWS = 200

CHECK_SPECS = [
    dg.AssetCheckSpec(
        "price_jump",
        asset=MINUTE_BARS,
        description="WARN: a 1-minute return far beyond the symbol's recent volatility.",
    ),
    dg.AssetCheckSpec(
        "volume_spike",
        asset=MINUTE_BARS,
        description="WARN: a minute volume many times the symbol's recent median.",
    ),
    dg.AssetCheckSpec(
        "stale_feed",
        asset=MINUTE_BARS,
        description="WARN: a symbol with no ticks for several minutes while others trade.",
    ),
    dg.AssetCheckSpec(
        "impossible_data",
        asset=MINUTE_BARS,
        description=(
            "ERROR: high below low, a negative volume, or a price outside the day's plausible "
            "range; lists and alerts each such bar. dbt's ERROR tests on minute_bars apply the "
            "same rules in the same run and block the marts downstream."
        ),
    ),
]

ANOMALY_COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn("time", "string", description="Start of the minute, UTC"),
        dg.TableColumn("symbol", "string"),
        dg.TableColumn("rule", "string"),
        dg.TableColumn("value", "float"),
        dg.TableColumn("threshold", "float"),
    ]
)


def to_alerts(anomalies: pd.DataFrame) -> list[Alert]:
    return [
        Alert(
            alert_id=row.anomaly_id,
            kind="anomaly",
            rule=row.rule,
            severity=row.severity,
            asset_key=MINUTE_BARS.to_user_string(),
            event_time=row.minute_ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
            symbol=row.symbol,
            value=row.value,
            threshold=row.threshold,
        )
        for row in anomalies.itertuples()
    ]


def anomaly_table(anomalies: pd.DataFrame) -> dg.TableMetadataValue:
    latest = anomalies.tail(TABLE_ROWS)
    return dg.TableMetadataValue(
        records=[
            dg.TableRecord(
                {
                    "time": row.minute_ts.strftime("%Y-%m-%d %H:%M"),
                    "symbol": row.symbol,
                    "rule": row.rule,
                    "value": row.value,
                    "threshold": row.threshold,
                }
            )
            for row in latest.itertuples()
        ],
        schema=ANOMALY_COLUMNS,
    )


@dg.multi_asset_check(specs=CHECK_SPECS)
def minute_bars_anomaly_checks(
    context: dg.AssetCheckExecutionContext, config: AnomalyRules, alerts: AlertsResource
) -> Iterator[dg.AssetCheckResult]:
    """Evaluate the anomaly rules on the whole mart and publish each new anomaly once."""
    # The newest commit, not the last complete build: a bar that blocks the marts is in there.
    with connect(latest=True) as con:
        anomalies = find_anomalies(con, config)
    delivery = alerts.publish(to_alerts(anomalies))
    if delivery.error:
        context.log.warning(
            "alerts not delivered, %d pending for the next evaluation: %s",
            len(delivery.pending),
            delivery.error,
        )
    delivery_metadata = {
        "alerts_sent": len(delivery.sent),
        "alerts_pending": len(delivery.pending),
        "alert_delivery_error": delivery.error or "",
    }
    for spec in CHECK_SPECS:
        found = anomalies[anomalies["check"] == spec.name]
        yield dg.AssetCheckResult(
            check_name=spec.name,
            asset_key=MINUTE_BARS,
            passed=found.empty,
            severity=CHECK_SEVERITY[spec.name],
            metadata={
                "anomaly_count": len(found),
                "symbols": len(found["symbol"].unique()),
                "anomalies": anomaly_table(found),
                **delivery_metadata,
            },
        )
