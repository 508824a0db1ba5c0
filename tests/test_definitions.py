"""Loading: the Dagster definitions load and validate as `dagster dev` would load them."""

import subprocess
import sys
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_validate(aws_env):
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_definitions_hold_the_pipeline():
    from stock_pipeline.definitions import defs

    assert defs.get_sensor_def("kinesis_ticks_sensor")
    assert defs.resolve_job_def("raw_ticks_job")
    assert defs.get_assets_def("raw_ticks")


def test_every_automation_condition_has_a_running_sensor():
    """Dagster adds a stopped `default_automation_condition_sensor` for conditions no sensor
    targets: those would never be evaluated."""
    from stock_pipeline.definitions import defs

    repository = defs.get_repository_def()
    sensors = {sensor.name: sensor for sensor in repository.sensor_defs}
    assert "default_automation_condition_sensor" not in sensors
    automation = sensors["transform_automation_sensor"]
    assert automation.default_status == dg.DefaultSensorStatus.RUNNING
    check = dg.AssetCheckKey(dg.AssetKey("daily_prices"), "daily_close_matches_official")
    assert check in automation.asset_selection.resolve_checks(repository.asset_graph)
