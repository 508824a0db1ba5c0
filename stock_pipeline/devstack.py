"""The local stack's state across restarts: the lake snapshot, shutdown drain, leftover runs.

The emulator keeps nothing across a restart, while the warehouse and Dagster's instance live on
local disk. So that stream, lake and warehouse agree after `make dev` is restarted:

- the emulator saves the lake bucket under LOCAL_S3_DIR when it stops and loads it back when it
  starts (only what changed is copied), and marks a complete save;
- Ctrl-C stops the producer first and lets the pipeline drain the stream (no run in flight, no
  record after the sensor's checkpoints) before Dagster and the emulator stop, so the stream's
  records are all in the lake and warehouse when the stream goes away;
- a start after a stop that did not save the lake (the emulator killed) wipes the local state
  that would disagree with the lake, and says so.
"""

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from stock_pipeline.settings import get_settings

log = logging.getLogger("stock_pipeline")

COMPLETE_MARKER = ".complete"  # written after a whole save, removed once the emulator is in use
MANIFEST = ".manifest.json"  # key -> ETag of the objects saved, so a save copies only changes
IN_FLIGHT_STATUSES = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED")
LEFT_IN_FLIGHT_STATUSES = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")


@dataclass
class CopyStats:
    objects: int = 0
    bytes: int = 0
    removed: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        return (
            f"{self.objects} objects ({self.bytes / 1e6:.1f} MB) copied, {self.removed} removed, "
            f"in {self.seconds:.1f} s"
        )


def snapshot_dir() -> Path:
    settings = get_settings()
    return settings.local_s3_dir.absolute() / settings.lake_bucket


def _manifest(folder: Path) -> dict[str, str]:
    path = folder / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def restore_lake(s3, bucket: str, folder: Path) -> CopyStats:
    """Put every saved object back into `bucket`; the save is then no longer complete."""
    started, stats = time.monotonic(), CopyStats()
    for key in _manifest(folder):
        body = (folder / key).read_bytes()
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        stats.objects += 1
        stats.bytes += len(body)
    (folder / COMPLETE_MARKER).unlink(missing_ok=True)
    stats.seconds = time.monotonic() - started
    return stats


def save_lake(s3, bucket: str, folder: Path) -> CopyStats:
    """Mirror `bucket` into `folder`, copying only objects whose ETag changed."""
    started, stats = time.monotonic(), CopyStats()
    folder.mkdir(parents=True, exist_ok=True)
    saved = _manifest(folder)
    current: dict[str, str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            current[obj["Key"]] = obj["ETag"]
    for key, etag in current.items():
        if saved.get(key) == etag:
            continue
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        path = folder / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        stats.objects += 1
        stats.bytes += len(body)
    for key in saved.keys() - current.keys():
        (folder / key).unlink(missing_ok=True)
        stats.removed += 1
    (folder / MANIFEST).write_text(json.dumps(current))
    (folder / COMPLETE_MARKER).touch()
    stats.seconds = time.monotonic() - started
    return stats


def local_state(dagster_home: Path) -> list[Path]:
    """What disagrees with the lake once the lake is lost: the saved lake, the local warehouse
    (catalog and data files), Dagster's runs, event logs and cursors."""
    settings = get_settings()
    paths = [settings.local_s3_dir.absolute()]
    kind, target = settings.catalog
    if kind == "sqlite":
        paths += _sqlite_files(Path(target))
    if "://" not in settings.warehouse_data_url:
        paths.append(Path(settings.warehouse_data_url))
    dagster_state = [dagster_home / name for name in ("storage", "history", "schedules")]
    return paths + dagster_state + _sqlite_files(dagster_home / "event_log.db")


def _sqlite_files(database: Path) -> list[Path]:
    """A SQLite database and the write-ahead log files next to it."""
    return [database, *(database.with_name(database.name + end) for end in ("-wal", "-shm"))]


def start_clean_if_lake_was_lost(dagster_home: Path) -> bool:
    """Wipe the local state if the last stop did not save the lake; whether it wiped.

    Without a saved lake the restarted emulator's bucket is empty (or older than the warehouse),
    and resuming would keep half: marts over ticks the lake lacks.
    """
    if (snapshot_dir() / COMPLETE_MARKER).exists():
        return False
    leftovers = [
        path
        for path in local_state(dagster_home)
        if path.is_file() or (path.is_dir() and any(path.iterdir()))
    ]
    if not leftovers:
        return False
    log.error(
        "STARTING CLEAN: the last stop of the local stack did not save the lake (the emulator "
        "was killed?), so the warehouse and Dagster's runs and cursors no longer match it. "
        "Wiping %s.",
        ", ".join(str(p) for p in leftovers),
    )
    for path in leftovers:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return True


def cancel_runs_left_in_flight(instance) -> int:
    """Mark runs a previous session left in flight as canceled (their stream is gone)."""
    import dagster as dg

    runs = instance.get_runs(
        dg.RunsFilter(statuses=[dg.DagsterRunStatus[s] for s in LEFT_IN_FLIGHT_STATUSES])
    )
    for run in runs:
        instance.report_run_canceled(
            run,
            message="The local stack stopped while this run was in flight; its stream went "
            "with the emulator.",
        )
    return len(runs)


def _sensor_cursor(instance, sensor_name: str):
    """The sensor's saved cursor (`planner.Cursor`); an empty one before its first evaluation."""
    from stock_pipeline.defs.ingest.planner import Cursor

    for state in instance.all_instigator_state():
        if state.instigator_name == sensor_name and state.instigator_data:
            return Cursor.loads(state.instigator_data.cursor)
    return Cursor()


def records_not_consumed(instance, kinesis, stream_name: str) -> int | None:
    """Records after the sensor's checkpoints (a lower bound, at most one page per shard), or
    None while the sensor has no cursor for this stream yet."""
    from stock_pipeline.defs.ingest.kinesis import list_shards, scan_shard
    from stock_pipeline.defs.ingest.planner import Stream

    cursor = _sensor_cursor(instance, "kinesis_ticks_sensor")
    summary = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
    stream = Stream.from_summary(summary)
    if cursor.stream != stream.identity:
        return None
    pending = 0
    for shard in list_shards(kinesis, stream_name):
        if shard.shard_id in cursor.drained:
            continue
        after = cursor.shards.get(shard.shard_id, {}).get("sequence")
        pending += scan_shard(kinesis, stream_name, shard, after, limit=10_000).count
    return pending


def runs_in_flight(instance, job_name: str) -> int:
    import dagster as dg

    statuses = [dg.DagsterRunStatus[s] for s in IN_FLIGHT_STATUSES]
    return instance.get_runs_count(dg.RunsFilter(job_name=job_name, statuses=statuses))


def wait_until_drained(instance, kinesis, stream_name: str, timeout: float) -> bool:
    """Wait until every record on the stream was handed to a run and no run is in flight."""
    deadline = time.monotonic() + timeout
    while True:
        pending = records_not_consumed(instance, kinesis, stream_name)
        in_flight = runs_in_flight(instance, "raw_ticks_job")
        if pending == 0 and in_flight == 0:
            return True
        if time.monotonic() > deadline:
            log.error(
                "DATA LOSS: gave up draining after %.0f s with %s records not consumed and %d "
                "runs in flight; they go with the emulator's stream.",
                timeout,
                "unknown" if pending is None else pending,
                in_flight,
            )
            return False
        time.sleep(1)


def _interrupt(process, group: bool) -> None:
    if process is not None and process.poll() is None:
        (os.killpg if group else os.kill)(process.pid, signal.SIGINT)


def _wait_or_kill(process, timeout: float, what: str) -> None:
    if process is None:
        return
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.error("%s did not stop within %.0f s: killing it", what, timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # stragglers in its process group, if any


def stop_local_stack(producer, dagster, emulator, drain: bool) -> None:
    """Stop in the order that loses nothing: producer, drain, Dagster, then the emulator.

    Dagster gets SIGINT on its own process only (not its group): `dagster dev` then shuts its
    code server down, which waits for runs in flight instead of interrupting them. A second
    Ctrl-C while draining skips the drain.
    """
    import boto3

    # Only the drain may be cut short: any other step interrupted would leave processes behind.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _interrupt(producer, group=True)
    _wait_or_kill(producer, 10, "the producer")
    if drain and dagster is not None and dagster.poll() is None:
        import dagster as dg

        timeout = get_settings().dev_drain_timeout_seconds
        print(
            f"draining the stream into the lake (up to {timeout:.0f} s; Ctrl-C again skips)",
            flush=True,
        )
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            with dg.DagsterInstance.get() as instance:
                kinesis = boto3.client("kinesis")
                if wait_until_drained(instance, kinesis, get_settings().ticks_stream, timeout):
                    print("drained: every record on the stream is in the lake", flush=True)
        except KeyboardInterrupt:
            log.error("DATA LOSS: drain skipped; records not consumed go with the emulator")
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    _interrupt(dagster, group=False)
    _wait_or_kill(dagster, 60, "dagster dev")
    _interrupt(emulator, group=True)  # it saves the lake before it exits
    _wait_or_kill(emulator, 300, "the emulator")
