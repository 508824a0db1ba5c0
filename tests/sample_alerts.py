"""Alerts as the anomaly checks raise them, for tests and benchmarks."""

from datetime import datetime

from stock_pipeline.resources.alerts import Alert


def anomaly_alert(
    rule: str, symbol: str, minute: datetime, severity: str = "WARN", **fields
) -> Alert:
    """`rule` found on `symbol`'s minute bar at `minute` (UTC), with the checks' alert id."""
    return Alert(
        alert_id=f"{rule}:{symbol}:{minute:%Y-%m-%dT%H:%MZ}",
        kind="anomaly",
        rule=rule,
        severity=severity,
        asset_key="minute_bars",
        event_time=f"{minute:%Y-%m-%dT%H:%M:%SZ}",
        symbol=symbol,
        **fields,
    )
