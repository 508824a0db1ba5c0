"""Anomaly checks on `minute_bars`: they report and alert what the rules found.

The rules are the dbt model `minute_bar_rule_days` (listed one anomaly a row by the view
`minute_bar_anomalies`), built in the same dbt step as `minute_bars`; these checks read it and
run after it. No check here sets an automation condition, so Dagster adds them to every run that
materializes `minute_bars` (a job, a sensor or declarative automation).

What blocks the marts on impossible data is dbt itself: its ERROR tests on `minute_bars` read the
same anomalies, between the models, and dbt skips the marts when one fails. The `impossible_data`
check here lists the bars those tests reject and alerts on each, once.
"""

from collections.abc import Iterator

import dagster as dg
import pandas as pd

from stock_pipeline.resources.alerts import Alert, AlertsResource
from stock_pipeline.resources.warehouse import connect

MINUTE_BARS = dg.AssetKey("minute_bars")
ANOMALIES = dg.AssetKey("minute_bar_anomalies")
SEVERITY = {
    "price_jump": "WARN",
    "volume_spike": "WARN",
    "stale_feed": "WARN",
    "high_below_low": "ERROR",
    "negative_volume": "ERROR",
    "implausible_price": "ERROR",
}
# The asset check that reports each rule: the impossible-data rules share one ERROR check.
CHECK = {
    "price_jump": "price_jump",
    "volume_spike": "volume_spike",
    "stale_feed": "stale_feed",
    "high_below_low": "impossible_data",
    "negative_volume": "impossible_data",
    "implausible_price": "impossible_data",
}
CHECK_SEVERITY = {check: dg.AssetCheckSeverity(SEVERITY[rule]) for rule, check in CHECK.items()}
# Most anomalies listed in one check's metadata table (the count is always complete).
TABLE_ROWS = 200

CHECK_SPECS = [
    dg.AssetCheckSpec(
        "price_jump",
        asset=MINUTE_BARS,
        additional_deps=[ANOMALIES],
        description="WARN: a 1-minute return far beyond the symbol's recent volatility.",
    ),
    dg.AssetCheckSpec(
        "volume_spike",
        asset=MINUTE_BARS,
        additional_deps=[ANOMALIES],
        description="WARN: a minute volume many times the symbol's recent median.",
    ),
    dg.AssetCheckSpec(
        "stale_feed",
        asset=MINUTE_BARS,
        additional_deps=[ANOMALIES],
        description="WARN: a symbol with no ticks for several minutes while others trade.",
    ),
    dg.AssetCheckSpec(
        "impossible_data",
        asset=MINUTE_BARS,
        additional_deps=[ANOMALIES],
        description=(
            "ERROR: high below low, a negative volume, or a price outside the day's plausible "
            "range; lists and alerts each such bar. dbt's ERROR tests on minute_bars read the "
            "same anomalies in the same run and block the marts downstream."
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


def read_anomalies() -> pd.DataFrame:
    """The anomalies `minute_bar_anomalies` lists, by time, with the check and severity of each."""
    # The newest commit, not the last complete build: a bar that blocks the marts is in there.
    with connect(latest=True) as con:
        found = con.execute(
            """
            select anomaly_id, rule, symbol, minute_ts, value, threshold
            from minute_bar_anomalies
            order by minute_ts, rule, symbol
            """
        ).df()
    found["minute_ts"] = pd.to_datetime(found["minute_ts"], utc=True)
    found.insert(2, "check", found["rule"].map(CHECK))
    found.insert(3, "severity", found["rule"].map(SEVERITY))
    return found


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
    context: dg.AssetCheckExecutionContext, alerts: AlertsResource
) -> Iterator[dg.AssetCheckResult]:
    """Report the anomalies the rules found in the whole mart and publish each new one once."""
    anomalies = read_anomalies()
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
        metadata = {
            "anomaly_count": len(found),
            "symbols": len(found["symbol"].unique()),
            **delivery_metadata,
        }
        # Not an empty table on every micro-batch's evaluation: each is kept in the event log.
        if not found.empty:
            metadata["anomalies"] = anomaly_table(found)
        yield dg.AssetCheckResult(
            check_name=spec.name,
            asset_key=MINUTE_BARS,
            passed=found.empty,
            severity=CHECK_SEVERITY[spec.name],
            metadata=metadata,
        )
