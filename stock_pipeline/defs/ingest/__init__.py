"""Ingest: the Kinesis stream into the S3 Parquet lake, exactly once per shard range."""

import dagster as dg

from stock_pipeline.defs.ingest.assets import raw_ticks
from stock_pipeline.defs.ingest.compaction import (
    raw_ticks_compaction,
    raw_ticks_compaction_job,
    raw_ticks_compaction_schedule,
)
from stock_pipeline.defs.ingest.jobs import raw_ticks_job
from stock_pipeline.defs.ingest.sensors import kinesis_ticks_sensor
from stock_pipeline.resources.aws import KinesisResource, LakeResource
from stock_pipeline.resources.metrics import MetricsResource

defs = dg.Definitions(
    assets=[raw_ticks, raw_ticks_compaction],
    jobs=[raw_ticks_job, raw_ticks_compaction_job],
    schedules=[raw_ticks_compaction_schedule],
    sensors=[kinesis_ticks_sensor],
    resources={
        "kinesis": KinesisResource(stream_name=dg.EnvVar("TICKS_STREAM")),
        "lake": LakeResource(bucket=dg.EnvVar("LAKE_BUCKET"), prefix=dg.EnvVar("LAKE_PREFIX")),
        # Also published by quality's health sensors.
        "metrics": MetricsResource(namespace=dg.EnvVar("METRICS_NAMESPACE")),
    },
)
