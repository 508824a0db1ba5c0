"""The Glue tables Athena reads agree with the Parquet files the pipeline actually writes."""

import io
import re
from datetime import UTC, date, datetime, timedelta

import boto3
import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stock_pipeline.settings import get_settings
from tests.history.conftest import materialize_days
from tests.quality.conftest import session_ticks

JAVA_DATE_FORMAT = {"yyyy": "%Y", "MM": "%m", "dd": "%d"}


def glue_type(arrow: pa.DataType) -> str:
    """The Hive/Athena type that reads `arrow` from Parquet."""
    if pa.types.is_timestamp(arrow):
        return "timestamp"
    return {
        pa.string(): "string",
        pa.float64(): "double",
        pa.int64(): "bigint",
        pa.int32(): "int",
        pa.date32(): "date",
    }[arrow]


def first_object(s3, prefix: str) -> str:
    listing = s3.list_objects_v2(Bucket=get_settings().lake_bucket, Prefix=prefix)
    return sorted(o["Key"] for o in listing["Contents"])[0]


def assert_table_reads(table: dict, key: str, s3) -> None:
    body = s3.get_object(Bucket=get_settings().lake_bucket, Key=key)["Body"].read()
    schema = pq.read_schema(io.BytesIO(body))
    columns = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
    assert columns == [(f.name, glue_type(f.type)) for f in schema]

    # Partitions: dt alone, projected; the shard= level stays inside each dt= location.
    assert table["PartitionKeys"] == [{"Name": "dt", "Type": "string"}]
    params = table["Parameters"]
    assert params["projection.enabled"] == "true"
    assert [k for k in params if k.startswith("projection.") and ".type" in k] == [
        "projection.dt.type"
    ]
    assert params["projection.dt.type"] == "date"
    day = re.search(r"/dt=([^/]+)/", key).group(1)
    strftime = params["projection.dt.format"]
    for java, python in JAVA_DATE_FORMAT.items():
        strftime = strftime.replace(java, python)
    parsed = datetime.strptime(day, strftime).date()
    assert parsed.strftime(strftime) == day  # the projected value is exactly the key's
    start, end = params["projection.dt.range"].split(",")
    assert date.fromisoformat(start) <= parsed
    assert end == "NOW+1DAYS"  # late-evening UTC ticks land on tomorrow's dt
    location = params["storage.location.template"].replace("${dt}", day)
    assert f"s3://{get_settings().lake_bucket}/{key}".startswith(location)
    assert table["StorageDescriptor"]["Location"] == location.split("dt=")[0]


@pytest.fixture
def glue(provisioned):
    client = boto3.client("glue")
    return lambda name: client.get_table(DatabaseName="stock_lake", Name=name)["Table"]


def test_ticks_table_matches_a_raw_ticks_file(glue, ingest_ticks, s3):
    ticks = session_ticks(["AAPL", "MSFT"], 5, 2.0, start=datetime.now(UTC) - timedelta(hours=1))
    ingest_ticks(ticks.assign(ts=ticks["ts"].map(lambda t: t.isoformat())).to_dict("records"))
    key = first_object(s3, "raw/ticks/")
    assert "/shard=" in key
    assert_table_reads(glue("ticks"), key, s3)


def test_daily_bars_table_matches_a_daily_bars_file(glue, monkeypatch, s3):
    monkeypatch.setenv("SYMBOLS", "AAPL,MSFT")
    get_settings.cache_clear()
    with dg.DagsterInstance.ephemeral() as instance:
        assert materialize_days("2026-11-18", "2026-11-20", instance).success
    assert_table_reads(glue("daily_bars"), first_object(s3, "raw/daily_bars/"), s3)
