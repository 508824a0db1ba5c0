"""The pipeline's settings: every environment variable it reads, declared once with its type,
default and meaning.

`get_settings()` reads them once per process: the process environment first, then `.env` in the
working directory, then the defaults below. A bad value stops the process at start-up with one
line naming the variable (`SettingsError`).

Other programs read some of them from the environment themselves: dbt's profiles.yml and sources
(`env_var()`), boto3 (`AWS_*`) and Dagster's `dg.EnvVar` resource config. `export_environment()`
writes them there once, resolved (absolute local paths, the warehouse's data path), where a
process starts: the `stock-pipeline` command and the Dagster code location (definitions.py).
"""

import os
from datetime import date
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LOCAL_ENDPOINT = "http://127.0.0.1:4566"
CATALOG_KINDS = ("sqlite", "postgres")
MARKET_DATA_KINDS = ("synthetic", "yfinance", "csv")
# Read by Dagster itself from the process environment, never exported.
DAGSTER_OWN = ("dagster_home", "dagster_pg_url")


class SettingsError(ValueError):
    """A variable with a value the pipeline cannot use; the message names it, in one line."""


class Settings(BaseSettings):
    """Field `name` is the environment variable `NAME`."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # --- AWS -----------------------------------------------------------------------------------
    aws_endpoint_url: str | None = Field(
        None, description="boto3's own variable: the emulator; empty or unset for real AWS"
    )
    aws_default_region: str = Field("us-east-1", description="region")
    aws_access_key_id: str | None = Field(
        None, repr=False, description="emulator keys only; delete for AWS (credential chain)"
    )
    aws_secret_access_key: str | None = Field(
        None, repr=False, description="emulator keys only; delete for AWS (credential chain)"
    )
    aws_profile: str | None = Field(
        None, description="boto3's own variable: a named profile of ~/.aws (AWS only)"
    )
    stack_name: str = Field(
        "stock-pipeline", description="the CloudFormation stack `provision` deploys"
    )
    # --- Stream (infra/stack.yaml judges the values `provision` passes it) ------------------------
    ticks_stream: str = Field("stock-ticks", description="Kinesis stream")
    ticks_stream_shards: int = Field(2, description="shards `provision` creates")
    ticks_stream_retention_hours: int = Field(
        24, description="how long the stream keeps records (`provision`)"
    )
    # A tick waits up to this long for the run that lands it; an evaluation that finds two runs
    # in flight skips after one count query, so a short interval costs little.
    kinesis_sensor_interval_seconds: int = Field(
        2, ge=1, description="seconds between sensor ticks"
    )
    kinesis_max_records_per_run: int = Field(
        200000, ge=1, description="most records one `raw_ticks` run consumes"
    )
    max_future_skew_seconds: float = Field(
        300,
        ge=0,
        description="a tick dated further than this after its Kinesis arrival is quarantined "
        "as `future_timestamp`",
    )
    # --- Lake ----------------------------------------------------------------------------------
    lake_bucket: str = Field("stock-lake", description="S3 bucket of the lake")
    lake_prefix: str = Field("", description="key prefix inside the bucket")
    quarantine_expiration_days: int = Field(
        30, description="days before quarantined records expire (`provision`)"
    )
    # --- Alerts and metrics --------------------------------------------------------------------
    alerts_topic: str = Field("stock-alerts", description="SNS topic (ARN resolved at run time)")
    alerts_queue: str = Field(
        "stock-alerts-local",
        description="SQS queue subscribed to the topic, read by `stock-pipeline alerts`",
    )
    alert_email: str = Field(
        "", description="subscribed to the alerts topic by e-mail when set (`provision`)"
    )
    metrics_namespace: str = Field(
        "StockPipeline", description="CloudWatch namespace of the pipeline's metrics and alarms"
    )
    latest_quotes_max_age_minutes: float = Field(
        10, gt=0, description="freshness bound for `latest_quotes`"
    )
    # --- Anomaly rules (dbt_project/models/marts/minute_bar_rule_days.sql) ---------------------
    anomaly_window_bars: int = Field(
        30, ge=2, description="bars of recent history the price-jump and volume-spike rules use"
    )
    anomaly_min_history: int = Field(
        8,
        ge=1,
        description="the fewest bars of history the price-jump and volume-spike rules judge on",
    )
    anomaly_price_jump_z: float = Field(
        10, gt=0, description="price jump threshold (z-score of the 1-minute return)"
    )
    anomaly_volume_spike_ratio: float = Field(
        10, gt=1, description="volume spike threshold (multiple of the recent median)"
    )
    anomaly_stale_minutes: int = Field(
        5, ge=1, description="stale feed threshold (minutes silent while others trade)"
    )
    anomaly_plausible_price_ratio: float = Field(
        2,
        gt=1,
        description="impossible data: a bar beyond this factor of the day's median close "
        "(the check and dbt's blocking test)",
    )
    # --- Warehouse (DuckLake) ------------------------------------------------------------------
    warehouse_catalog: str = Field(
        "sqlite:.data/warehouse.sqlite",
        description="the DuckLake catalog: `sqlite:<path>` or `postgres:<libpq connection string>`",
    )
    warehouse_data_path: str = Field(
        ".data/warehouse/",
        description="where the warehouse's Parquet files go; empty: "
        "`s3://$LAKE_BUCKET/$LAKE_PREFIX/warehouse/` (AWS)",
    )
    warehouse_snapshot_retention_hours: float = Field(
        24,
        ge=0,
        description="how far back time travel reaches; older snapshots are expired by the "
        "maintenance job",
    )
    warehouse_maintenance_cron: str = Field(
        "0 * * * *", description="when `warehouse_maintenance_job` runs"
    )
    # --- Market data and producer --------------------------------------------------------------
    market_data_source: str = Field(
        "synthetic",
        description="`synthetic`, `yfinance` or `csv:<path>` (producer and `daily_bars`)",
    )
    symbols: Annotated[list[str], NoDecode] = Field(
        [
            "AAPL",
            "MSFT",
            "NVDA",
            "AMZN",
            "GOOGL",
            "META",
            "TSLA",
            "BRK-B",
            "JPM",
            "V",
            "UNH",
            "XOM",
            "JNJ",
            "WMT",
            "MA",
            "PG",
            "HD",
            "COST",
            "AVGO",
            "KO",
        ],
        description="comma separated",
    )
    history_start_date: date = Field(
        date(2000, 1, 3),
        description="first NYSE trading day of `daily_bars`' partitions; asking for history "
        "before it is refused with a message naming it",
    )
    producer_rate: float = Field(50, gt=0, description="ticks per second the producer sends")
    producer_max_in_flight: int = Field(
        8, ge=1, description="PutRecords calls the producer keeps in flight at once"
    )
    # --- Local stack and Dagster ---------------------------------------------------------------
    local_s3_dir: Path = Field(
        Path(".data/s3"),
        description="where the emulator saves the lake bucket at stop and restores it from at "
        "start",
    )
    dev_drain_timeout_seconds: float = Field(
        120,
        ge=0,
        description="how long Ctrl-C of `make dev` waits for the pipeline to drain the stream",
    )
    dagster_retention_hours: float = Field(
        24,
        ge=0,
        description="finished runs older than this, with their event and compute logs, are "
        "deleted by `dagster_state_purge_job` (every 30 min)",
    )
    dagster_micro_batch_retention_hours: float = Field(
        8,
        ge=0,
        description="successful `raw_ticks_job` runs, one every few seconds, are deleted after "
        "this instead (when shorter): their data is in the lake and the marts",
    )
    dagster_home: Path = Field(
        Path(".dagster"),
        description="Dagster's instance directory (`stock-pipeline dev` writes its `dagster.yaml`)",
    )
    dagster_pg_url: str | None = Field(
        None,
        repr=False,
        description="PostgreSQL URL of the production instance (`deploy/dagster.yaml`)",
    )

    @field_validator(
        "aws_endpoint_url", "aws_access_key_id", "aws_secret_access_key", "aws_profile"
    )
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("warehouse_catalog")
    @classmethod
    def _catalog(cls, value: str) -> str:
        kind, sep, target = value.partition(":")
        if kind not in CATALOG_KINDS or not sep or not target.strip():
            raise ValueError(
                "is not a catalog: use sqlite:<path> or postgres:<libpq connection string>"
            )
        return f"{kind}:{target.strip()}"

    @field_validator("market_data_source")
    @classmethod
    def _market_data_source(cls, value: str) -> str:
        if value.partition(":")[0] not in MARKET_DATA_KINDS:
            raise ValueError("is not a source: use synthetic, yfinance or csv:<path>")
        return value

    @field_validator("symbols", mode="before")
    @classmethod
    def _symbols(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [s.strip().upper() for s in value.split(",") if s.strip()]
        if not value:
            raise ValueError("names no symbol: list them comma separated")
        return value

    @property
    def catalog(self) -> tuple[str, str]:
        """The catalog's kind and target; a local SQLite path made absolute, so dbt (which runs
        in dbt_project/) and Python (in the repository) open the same file."""
        kind, _, target = self.warehouse_catalog.partition(":")
        return kind, str(Path(target).absolute()) if kind == "sqlite" else target

    @property
    def warehouse_data_url(self) -> str:
        """Where the warehouse's data files go: an absolute local directory, or the URL
        `WAREHOUSE_DATA_PATH` names, or (empty) the lake bucket's warehouse/ prefix."""
        configured = self.warehouse_data_path
        if not configured:
            prefix = self.lake_prefix.strip("/")
            return f"s3://{self.lake_bucket}/{prefix + '/' if prefix else ''}warehouse/"
        if "://" in configured:
            return configured
        return f"{Path(configured).absolute()}/"

    def on_loopback(self) -> bool:
        """True when AWS is the emulator on this machine."""
        return urlparse(self.aws_endpoint_url or "").hostname in ("127.0.0.1", "localhost")

    def environment(self) -> dict[str, str]:
        """The variables as the programs that read the environment must see them."""
        values = {name.upper(): _env_text(getattr(self, name)) for name in type(self).model_fields}
        kind, target = self.catalog
        values["WAREHOUSE_CATALOG"] = f"{kind}:{target}"
        values["WAREHOUSE_DATA_PATH"] = self.warehouse_data_url
        values["LOCAL_S3_DIR"] = str(self.local_s3_dir.absolute())
        if self.on_loopback():  # the emulator takes any keys; AWS never sees these
            values["AWS_ACCESS_KEY_ID"] = self.aws_access_key_id or "test"
            values["AWS_SECRET_ACCESS_KEY"] = self.aws_secret_access_key or "test"
        for name in DAGSTER_OWN:
            values.pop(name.upper())
        return {name: value for name, value in values.items() if value is not None}


def _env_text(value: Any) -> str | None:
    """A value as the environment variable that sets it would spell it."""
    if value is None:
        return None
    if isinstance(value, list):
        return ",".join(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 10, as the docs write it, not 10.0
    return str(value)


def load_settings(**sources: Any) -> Settings:
    """Settings from the environment and `.env` (or `sources`, Settings' own keyword arguments);
    SettingsError naming the first bad variable."""
    try:
        return Settings(**sources)
    except ValidationError as err:
        raise SettingsError(describe(err)) from None


def describe(err: ValidationError) -> str:
    """The first error of `err` in one line: the variable, its value, what is wrong."""
    first = err.errors()[0]
    name = str(first["loc"][0]).upper()
    ctx = first.get("ctx", {})
    reasons = {
        "int_parsing": "is not a whole number",
        "int_from_float": "is not a whole number",
        "float_parsing": "is not a number",
        "date_from_datetime_parsing": "is not a date (YYYY-MM-DD)",
        "date_parsing": "is not a date (YYYY-MM-DD)",
        "greater_than": f"must be greater than {ctx.get('gt', 0):g}",
        "greater_than_equal": f"must be at least {ctx.get('ge', 0):g}",
        "value_error": str(ctx.get("error", "")),
    }
    reason = reasons.get(first["type"], first["msg"][0].lower() + first["msg"][1:])
    value = first["input"]
    if isinstance(value, list):
        value = ",".join(value)
    return f"{name}={value!r} {reason}"


@cache
def get_settings() -> Settings:
    """The process's settings, read once; `get_settings.cache_clear()` reads them again."""
    return load_settings()


def export_environment(settings: Settings | None = None) -> None:
    """Write the settings into this process's environment, for the programs that read it there
    (dbt, boto3, `dg.EnvVar`) and every subprocess. Once, where a process starts."""
    os.environ.update((settings or get_settings()).environment())
    if not os.environ.get("AWS_ENDPOINT_URL"):
        os.environ.pop("AWS_ENDPOINT_URL", None)  # empty means real AWS, as unset does


if __name__ == "__main__":
    # `python -m stock_pipeline.settings COMMAND...`: COMMAND (sqlfluff's dbt templater, dbt by
    # hand) with the settings in its environment, as the pipeline runs dbt.
    import sys

    export_environment()
    os.execvp(sys.argv[1], sys.argv[1:])
