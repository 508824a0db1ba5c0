"""Test fixtures: a real moto server on a free loopback port, reached over HTTP.

Each test gets a clean emulator (moto's reset API) and its own environment and warehouse catalog,
so tests do not see each other's streams, objects or alerts.
"""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
import requests
from dbt.adapters.duckdb.connections import DuckDBConnectionManager

from stock_pipeline.emulator import free_port, moto_server
from stock_pipeline.settings import Settings, export_environment, get_settings

# The tests' environment is the whole of their settings: a developer's .env stays out of them.
Settings.model_config["env_file"] = None
# One warehouse catalog file per test process, emptied for each test (clean_pipeline_env), and
# its data in the emulated lake bucket: dbt's partial parse holds only for the profile it was
# made with, the catalog's path in it, and a full parse costs every dbt command 2 s more.
CATALOG_DIR = Path(tempfile.mkdtemp(prefix="stock-pipeline-tests-"))
atexit.register(shutil.rmtree, CATALOG_DIR, ignore_errors=True)
CATALOG = f"sqlite:{CATALOG_DIR / 'warehouse.sqlite'}"
os.environ.update(WAREHOUSE_CATALOG=CATALOG, WAREHOUSE_DATA_PATH="")
# As the `stock-pipeline` command and the code location start (dbt parses as tests import).
export_environment()
# pytest-xdist workers: a dbt target directory each, so their parses never overwrite each other.
if worker := os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("DBT_TARGET_PATH", f"target/{worker}")


# A test is marked by what it uses, fixtures of fixtures included: `browser` drives Chromium,
# these start servers (the emulator, PostgreSQL, a whole `stock-pipeline dev`), processes (a
# command, dbt) or an instance on disk, and the rest are `unit` (`make test-unit`). The three
# marks split the suite.
INTEGRATION_FIXTURES = {
    "moto_endpoint",
    "postgres_dsn",
    "stack_env",
    "run_command",
    "dbt_cli",
    "dagster_home",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        uses = set(getattr(item, "fixturenames", ()))
        if "browser" in uses:
            item.add_marker(pytest.mark.browser)
        elif uses & INTEGRATION_FIXTURES:
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)
    # The slow tests first: pytest-xdist hands tests out in this order.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """Each test reads the settings from its own environment (`get_settings()` caches them)."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def run_command() -> Callable[..., subprocess.CompletedProcess]:
    """`run_command(*args, **options)`: `python *args` in its own process, as a user runs a
    command, its output captured as text; `options` go to `subprocess.run`."""

    def run(*args: str, **options) -> subprocess.CompletedProcess:
        options = {"capture_output": True, "text": True, "timeout": 120, **options}
        return subprocess.run([sys.executable, *args], **options)

    return run


@pytest.fixture
def dagster_home(tmp_path) -> Path:
    """An empty folder for a Dagster instance kept on disk (SQLite files, as `dagster dev`)."""
    home = tmp_path / "instance"
    home.mkdir()
    return home


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:  # as `stock-pipeline local-aws` runs it
        yield endpoint


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A throwaway PostgreSQL server for the session (tests/postgres.py); its libpq string."""
    from tests.postgres import postgres_server

    with postgres_server(free_port()) as dsn:
        yield dsn


@pytest.fixture
def postgres_database(postgres_dsn: str, request: pytest.FixtureRequest) -> str:
    """An empty database of its own for one test, on the session's server."""
    from tests.postgres import create_database

    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:50].lower()
    return create_database(postgres_dsn, f"{name}_{free_port()}")


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path) -> dict[str, str]:
    """A clean emulator and the pipeline's environment pointing at it."""
    return clean_pipeline_env(moto_endpoint, monkeypatch, tmp_path)


def clean_pipeline_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path) -> dict:
    """Reset the emulator and empty the warehouse; set the pipeline's variables, its Dagster
    home in `tmp_path`. For fixtures of any scope (pass a `pytest.MonkeyPatch.context()`)."""
    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    # dbt run in this process (dbtRunner) keeps its DuckDB, the catalog attached, for as long as
    # the profile is the same: it lets go of it before the catalog is emptied.
    DuckDBConnectionManager.close_all_connections()
    for catalog_file in CATALOG_DIR.iterdir():  # the database and its -wal and -shm
        catalog_file.unlink()
    # The defaults (not this process's environment), but for these.
    settings = Settings.model_construct(
        aws_endpoint_url=moto_endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        aws_default_region="us-east-1",
        # The warehouse's data files go to the emulated lake bucket, as on AWS.
        warehouse_catalog=CATALOG,
        warehouse_data_path="",
    )
    env = {**settings.environment(), "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    (tmp_path / "dagster_home").mkdir()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    return env


@pytest.fixture
def provisioned(aws_env: dict[str, str]) -> dict[str, str]:
    """The emulator with what `stock-pipeline provision` makes: stream, bucket, topic, queue."""
    from stock_pipeline.provision import provision

    provision(shard_count=2, wait=True)
    return aws_env


@pytest.fixture
def s3(aws_env):
    return boto3.client("s3")


@pytest.fixture
def kinesis(aws_env):
    return boto3.client("kinesis")


@pytest.fixture
def ingest_ticks(provisioned):
    """`ingest_ticks(ticks)`: the real producer, sensor and raw_ticks asset, in-process.

    One cursor per test, so repeated calls consume only what is new on the stream.
    """
    from tests.helpers import StreamIngest

    return StreamIngest()
