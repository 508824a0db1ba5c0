"""The settings: one declaration per variable, what the docs say of them, errors at start-up."""

import os
import re
from pathlib import Path

import pytest

from stock_pipeline.settings import LOCAL_ENDPOINT, Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
FIELDS = {name.upper(): field for name, field in Settings.model_fields.items()}
# .env.example sets the emulator's endpoint and keys; unset, the code goes to real AWS.
LOCAL_ONLY = {
    "AWS_ENDPOINT_URL": LOCAL_ENDPOINT,
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
}


def env_example() -> tuple[dict[str, str], dict[str, str]]:
    """The variables .env.example sets, and those it shows commented out (unset by default)."""
    text = (ROOT / ".env.example").read_text()
    active = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", text, re.MULTILINE))
    commented = dict(re.findall(r"^# ([A-Z][A-Z0-9_]*)=(.*)$", text, re.MULTILINE))
    return active, commented


def readme_table() -> dict[str, str | None]:
    """The README's environment-variable table: each variable's default as written there
    (None: "unset", "": "empty")."""
    section = (ROOT / "README.md").read_text().split("\n## Environment variables\n")[1]
    rows = [line for line in section.split("\n## ")[0].splitlines() if line.startswith("| `")]
    defaults: dict[str, str | None] = {}
    for row in rows:
        names_cell, default_cell = row.split(" | ")[:2]
        names = re.findall(r"`([A-Z][A-Z0-9_]*)`", names_cell)
        cell = default_cell.strip()
        values = {"unset": [None], "empty": [""]}.get(cell) or re.findall(r"`([^`]*)`", cell)
        assert values, f"no default for {names} in {row!r}"
        if len(values) == 1:
            values *= len(names)
        defaults.update(zip(names, values, strict=True))
    return defaults


def default(name: str):
    return FIELDS[name].default


def parsed(name: str, text: str):
    """`text` read as the settings read the variable `name`."""
    return getattr(load_settings(_env_file=None, **{name.lower(): text}), name.lower())


def test_every_variable_is_declared_with_a_default_and_a_meaning():
    for name, field in FIELDS.items():
        assert field.description and "\n" not in field.description, name
        assert not field.is_required(), name


def test_env_example_sets_each_variable_to_its_default():
    active, commented = env_example()
    assert set(active) | set(commented) == set(FIELDS)
    for name, text in active.items():
        if name in LOCAL_ONLY:
            assert (text, default(name)) == (LOCAL_ONLY[name], None), name
        else:
            assert parsed(name, text) == default(name), f"{name}={text}"
    for name, text in commented.items():  # shown as an example; unset or the default
        assert default(name) is None or parsed(name, text) == default(name), name


def test_readme_table_lists_each_variable_with_the_env_example_default():
    active, commented = env_example()
    documented = readme_table()
    assert set(documented) == set(FIELDS)
    for name, text in documented.items():
        if text is None:
            assert name not in active and default(name) is None, name
        else:
            assert text == active.get(name, commented.get(name)), name


def test_the_environment_wins_over_dotenv_and_dotenv_over_the_defaults(tmp_path, monkeypatch):
    dotenv = tmp_path / ".env"
    dotenv.write_text("LAKE_BUCKET=from-file\nTICKS_STREAM=from-file\n# LAKE_PREFIX=ignored\n")
    monkeypatch.setenv("LAKE_BUCKET", "from-env")
    monkeypatch.delenv("TICKS_STREAM")
    monkeypatch.delenv("LAKE_PREFIX")
    settings = load_settings(_env_file=dotenv)
    assert (settings.lake_bucket, settings.ticks_stream) == ("from-env", "from-file")
    assert settings.lake_prefix == ""


def test_the_exported_environment_is_resolved_for_dbt_and_boto3(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings.model_construct(
        aws_endpoint_url="http://localhost:4610",
        lake_bucket="b",
        lake_prefix="/team/",
        warehouse_data_path="",
    )
    env = settings.environment()
    assert env["WAREHOUSE_CATALOG"] == f"sqlite:{tmp_path / '.data' / 'warehouse.sqlite'}"
    assert env["WAREHOUSE_DATA_PATH"] == "s3://b/team/warehouse/"
    assert env["SYMBOLS"].startswith("AAPL,MSFT,")
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("test", "test")
    assert "DAGSTER_HOME" not in env  # Dagster's own, read by Dagster

    on_aws = Settings.model_construct(warehouse_data_path="lake/wh").environment()
    assert "AWS_ENDPOINT_URL" not in on_aws and "AWS_ACCESS_KEY_ID" not in on_aws
    assert on_aws["WAREHOUSE_DATA_PATH"] == f"{tmp_path / 'lake' / 'wh'}/"
    # Resolved values read back as themselves: a subprocess sees what its parent saw.
    again = load_settings(_env_file=None, **{k.lower(): v for k, v in env.items()})
    assert again.environment() == env


BAD_VALUES = [
    (
        "KINESIS_MAX_RECORDS_PER_RUN",
        "abc",
        "KINESIS_MAX_RECORDS_PER_RUN='abc' is not a whole number",
    ),
    ("TICKS_STREAM_SHARDS", "two", "TICKS_STREAM_SHARDS='two' is not a whole number"),
    ("PRODUCER_RATE", "0", "PRODUCER_RATE='0' must be greater than 0"),
    (
        "WAREHOUSE_CATALOG",
        "duckdb:warehouse.db",
        "WAREHOUSE_CATALOG='duckdb:warehouse.db' is not a catalog: use sqlite:<path> or "
        "postgres:<libpq connection string>",
    ),
]


@pytest.mark.parametrize(("variable", "value", "message"), BAD_VALUES)
def test_a_bad_value_stops_the_command_with_one_line_naming_it(
    variable, value, message, run_command
):
    result = run_command(
        "-m", "stock_pipeline.cli", "sql", "select 1", env={**os.environ, variable: value}, cwd=ROOT
    )
    assert result.returncode == 2
    assert result.stderr == f"stock-pipeline: error: {message}\n"


def test_a_bad_value_fails_the_code_location_naming_it(tmp_path, run_command):
    variable, value, message = BAD_VALUES[0]
    workspace = str(ROOT / "workspace.yaml")
    result = run_command(
        *("-m", "dagster", "definitions", "validate", "-w", workspace),
        env={**os.environ, variable: value},
        cwd=tmp_path,  # Dagster lets a .env in its directory override the environment
        timeout=300,
    )
    assert result.returncode != 0
    assert f"SettingsError: {message}" in result.stdout + result.stderr
