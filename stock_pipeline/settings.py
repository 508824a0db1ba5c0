"""Environment variables the pipeline reads, with their local defaults.

Dagster resources read these through `dg.EnvVar`; the CLI and dbt's profiles.yml use the same
names. `.env.example` documents them.
"""

import os
from pathlib import Path
from urllib.parse import urlparse

DEFAULTS: dict[str, str] = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "STACK_NAME": "stock-pipeline",
    "TICKS_STREAM": "stock-ticks",
    "TICKS_STREAM_SHARDS": "2",
    "KINESIS_SENSOR_INTERVAL_SECONDS": "5",
    "KINESIS_MAX_RECORDS_PER_RUN": "50000",
    "MAX_FUTURE_SKEW_SECONDS": "300",
    "LAKE_BUCKET": "stock-lake",
    "LAKE_PREFIX": "",
    "ALERTS_TOPIC": "stock-alerts",
    "ALERTS_QUEUE": "stock-alerts-local",
    # The DuckLake warehouse: its catalog database, and where its data files go (on local disk by
    # default, as the emulator keeps nothing; empty: the lake bucket's warehouse/ prefix, on AWS).
    "WAREHOUSE_CATALOG": "sqlite:.data/warehouse.sqlite",
    "WAREHOUSE_DATA_PATH": ".data/warehouse/",
    "WAREHOUSE_SNAPSHOT_RETENTION_HOURS": "24",
    "WAREHOUSE_MAINTENANCE_CRON": "0 * * * *",
    "LOCAL_S3_DIR": ".data/s3",
    "DEV_DRAIN_TIMEOUT_SECONDS": "120",
    "DAGSTER_RETENTION_HOURS": "24",
    "MARKET_DATA_SOURCE": "synthetic",
    "SYMBOLS": "AAPL,MSFT,NVDA,AMZN,GOOGL,META,TSLA,BRK-B,JPM,V,"
    "UNH,XOM,JNJ,WMT,MA,PG,HD,COST,AVGO,KO",
    "PRODUCER_RATE": "50",
    "PRODUCER_MAX_IN_FLIGHT": "8",
    "HISTORY_START_DATE": "2000-01-03",
    "LATEST_QUOTES_MAX_AGE_MINUTES": "10",
    "METRICS_NAMESPACE": "StockPipeline",
    # Anomaly thresholds (stock_pipeline/defs/quality/rules.py documents each).
    "ANOMALY_WINDOW_BARS": "30",
    "ANOMALY_MIN_HISTORY": "8",
    "ANOMALY_PRICE_JUMP_Z": "10",
    "ANOMALY_VOLUME_SPIKE_RATIO": "10",
    "ANOMALY_STALE_MINUTES": "5",
    "ANOMALY_PLAUSIBLE_PRICE_RATIO": "2",
}

LOCAL_ENDPOINT = "http://127.0.0.1:4566"


def setting(name: str) -> str:
    """The variable's value, or its documented default."""
    return os.environ.get(name, DEFAULTS.get(name, ""))


def symbols() -> list[str]:
    return [s.strip().upper() for s in setting("SYMBOLS").split(",") if s.strip()]


def warehouse_data_path() -> str:
    """Where the warehouse's data files go: `WAREHOUSE_DATA_PATH`, or the lake's warehouse/."""
    configured = setting("WAREHOUSE_DATA_PATH")
    if configured:
        return configured
    prefix = setting("LAKE_PREFIX").strip("/")
    return f"s3://{setting('LAKE_BUCKET')}/{prefix + '/' if prefix else ''}warehouse/"


def apply_defaults() -> None:
    """Fill unset variables with their defaults, so `dg.EnvVar` resolves without a .env file.

    Local warehouse paths are made absolute: dbt runs in dbt_project/, Python in the repo root, and
    both must open the same files.
    """
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
    if not os.environ.get("AWS_ENDPOINT_URL"):
        os.environ.pop("AWS_ENDPOINT_URL", None)  # empty means real AWS, as unset does
    # The emulator accepts any keys; AWS itself never gets these (its endpoint is not loopback).
    if urlparse(os.environ.get("AWS_ENDPOINT_URL", "")).hostname in ("127.0.0.1", "localhost"):
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    kind, sep, target = os.environ["WAREHOUSE_CATALOG"].partition(":")
    if kind == "sqlite" and sep and target:
        os.environ["WAREHOUSE_CATALOG"] = f"sqlite:{Path(target).absolute()}"
    data_path = os.environ["WAREHOUSE_DATA_PATH"]
    if data_path and "://" not in data_path:
        os.environ["WAREHOUSE_DATA_PATH"] = f"{Path(data_path).absolute()}/"
