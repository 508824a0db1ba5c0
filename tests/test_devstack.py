"""The local stack's lake snapshot and its clean-start rule, against the emulator over HTTP."""

import dagster as dg
import requests

from stock_pipeline import devstack
from stock_pipeline.cli import write_dev_instance
from stock_pipeline.settings import get_settings


def objects(s3, bucket: str) -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def test_lake_survives_an_emulator_restart_and_saves_copy_only_changes(
    provisioned, s3, tmp_path, monkeypatch, moto_endpoint
):
    monkeypatch.setenv("LOCAL_S3_DIR", str(tmp_path / "s3"))
    get_settings.cache_clear()
    bucket, folder = provisioned["LAKE_BUCKET"], devstack.snapshot_dir()
    for i in range(3):
        s3.put_object(
            Bucket=bucket, Key=f"raw/ticks/dt=2024-03-05/shard=0/{i}.parquet", Body=b"x" * i
        )
    first = devstack.save_lake(s3, bucket, folder)
    assert (first.objects, first.removed) == (3, 0)

    s3.put_object(Bucket=bucket, Key="raw/ticks/dt=2024-03-05/shard=0/1.parquet", Body=b"changed")
    s3.delete_object(Bucket=bucket, Key="raw/ticks/dt=2024-03-05/shard=0/2.parquet")
    s3.put_object(Bucket=bucket, Key="alerts/sent/a.json", Body=b"{}")
    second = devstack.save_lake(s3, bucket, folder)
    assert (second.objects, second.removed) == (2, 1)  # the changed and the new object only
    saved = objects(s3, bucket)

    # The emulator restarts empty; the lake comes back whole, and the save is "in use".
    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    s3.create_bucket(Bucket=bucket)  # as `provision` makes it
    restored = devstack.restore_lake(s3, bucket, folder)
    assert restored.objects == 3 and objects(s3, bucket) == saved
    assert not (folder / devstack.COMPLETE_MARKER).exists()


def test_a_stop_that_did_not_save_the_lake_starts_clean(tmp_path, monkeypatch):
    data, home = tmp_path / ".data", tmp_path / ".dagster"
    monkeypatch.setenv("LOCAL_S3_DIR", str(data / "s3"))
    monkeypatch.setenv("WAREHOUSE_CATALOG", f"sqlite:{data / 'warehouse.sqlite'}")
    monkeypatch.setenv("WAREHOUSE_DATA_PATH", f"{data / 'warehouse'}/")
    get_settings.cache_clear()
    data.mkdir()
    (home / "history").mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry: {enabled: false}\n")
    assert not devstack.start_clean_if_lake_was_lost(home)  # nothing there yet: fresh

    (data / "warehouse.sqlite").write_bytes(b"catalog")
    (data / "warehouse").mkdir()
    (data / "warehouse" / "part.parquet").write_bytes(b"marts")
    (data / "notes.txt").write_text("the user's own file")
    (home / "history" / "runs.db").write_bytes(b"runs")
    devstack.snapshot_dir().mkdir(parents=True)
    (devstack.snapshot_dir() / devstack.COMPLETE_MARKER).touch()
    assert not devstack.start_clean_if_lake_was_lost(home)  # saved: resume
    assert (data / "warehouse.sqlite").exists()

    (devstack.snapshot_dir() / devstack.COMPLETE_MARKER).unlink()  # the emulator was killed
    assert devstack.start_clean_if_lake_was_lost(home)
    assert sorted(p.name for p in data.iterdir()) == ["notes.txt"]
    assert not (home / "history").exists() and (home / "dagster.yaml").exists()


def test_the_dev_instance_recovers_crashed_runs_and_shows_no_dialog(dagster_home):
    write_dev_instance(dagster_home)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert instance.run_monitoring_enabled
        assert instance.run_retries_enabled
        assert not instance.nux_enabled
        assert not instance.telemetry_enabled
        # One event log for every run, where `make reset` and a clean start find it.
        assert instance.event_log_storage.get_db_path() == str(dagster_home / "event_log.db")
        assert dagster_home / "event_log.db" in devstack.local_state(dagster_home)
