"""Drive the real ingest path in-process (producer -> Kinesis (emulator) -> sensor -> raw_ticks)
and read what it landed in the lake."""

import boto3
import dagster as dg
import duckdb

from stock_pipeline.defs.ingest import defs as ingest_defs
from stock_pipeline.defs.ingest.assets import raw_ticks
from stock_pipeline.defs.ingest.sensors import kinesis_ticks_sensor
from stock_pipeline.producer.kinesis import KinesisProducer
from stock_pipeline.resources.warehouse import attach_lake
from stock_pipeline.settings import get_settings


def query_lake(sql: str, lake: str | None = None) -> list[tuple]:
    """The rows of `sql`, in which `ticks` is the lake's raw/ticks with its partition columns
    (`dt`, `shard`): in the lake bucket, or under the folder `lake` (a lake saved on disk)."""
    glob = f"{lake or f's3://{get_settings().lake_bucket}'}/raw/ticks/dt=*/shard=*/*.parquet"
    with attach_lake(duckdb.connect()) as con:
        return con.execute(
            "with ticks as (select * from read_parquet(?, hive_partitioning = true)) " + sql,
            [glob],
        ).fetchall()


class StreamIngest:
    """Puts ticks on the stream and drains it into the lake, keeping the sensor's cursor."""

    def __init__(self):
        self.cursor: str | None = None
        self.resources = dict(ingest_defs.resources)
        self.run_configs: list[dict] = []
        self.instance = dg.DagsterInstance.ephemeral()

    def put(self, ticks: list[dict]) -> None:
        KinesisProducer(boto3.client("kinesis"), get_settings().ticks_stream).put_ticks(ticks)

    def put_raw(self, records: list[tuple[bytes, str]]) -> None:
        """Records as (data, partition key), for payloads that are not well-formed ticks."""
        entries = [{"Data": data, "PartitionKey": key} for data, key in records]
        KinesisProducer(boto3.client("kinesis"), get_settings().ticks_stream).put_entries(entries)

    def evaluate_sensor(self) -> dg.SensorResult:
        context = dg.build_sensor_context(
            cursor=self.cursor, resources=self.resources, instance=self.instance
        )
        result = kinesis_ticks_sensor(context)
        if result.cursor is not None:  # None leaves the cursor as it was, as in the daemon
            self.cursor = result.cursor
        return result

    def run(self, run_config) -> dg.ExecuteInProcessResult:
        result = dg.materialize(
            [raw_ticks], run_config=run_config, resources=self.resources, instance=self.instance
        )
        assert result.success
        return result

    def drain(self, max_ticks: int = 50) -> int:
        """Evaluate the sensor and run what it asks for until it asks for nothing; runs made."""
        for runs in range(max_ticks):
            cursor = self.cursor
            result = self.evaluate_sensor()
            if not result.run_requests and result.cursor == cursor:
                return runs
            if not result.run_requests:
                continue
            (request,) = result.run_requests
            self.run_configs.append(request.run_config)
            self.run(request.run_config)
        raise AssertionError(f"stream not drained after {max_ticks} sensor ticks")

    def __call__(self, ticks: list[dict]) -> None:
        self.put(ticks)
        self.drain()
