"""Test fixtures: a real moto server on a free loopback port, reached over HTTP.

Each test gets a clean emulator (moto's reset API) and its own environment and warehouse catalog,
so tests do not see each other's streams, objects or alerts.
"""

import logging
import os
import socket
from collections.abc import Iterator

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from stock_pipeline.emulator import patch_kinesis_shards
from stock_pipeline.settings import Settings, export_environment, get_settings

logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto logs every request at INFO
# The tests' environment is the whole of their settings: a developer's .env stays out of them.
Settings.model_config["env_file"] = None
# As the `stock-pipeline` command and the code location start (dbt parses as tests import).
export_environment()
# pytest-xdist workers: a dbt target directory each, so their parses never overwrite each other.
if worker := os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("DBT_TARGET_PATH", f"target/{worker}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The slow tests first: pytest-xdist hands tests out in this order.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """Each test reads the settings from its own environment (`get_settings()` caches them)."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    patch_kinesis_shards()  # as `stock-pipeline local-aws` runs it
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A throwaway PostgreSQL server for the session (tests/postgres.py); its libpq string."""
    from tests.postgres import postgres_server

    with postgres_server(_free_port()) as dsn:
        yield dsn


@pytest.fixture
def postgres_database(postgres_dsn: str, request: pytest.FixtureRequest) -> str:
    """An empty database of its own for one test, on the session's server."""
    from tests.postgres import create_database

    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:50].lower()
    return create_database(postgres_dsn, f"{name}_{_free_port()}")


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path) -> dict[str, str]:
    """A clean emulator and the pipeline's environment pointing at it."""
    return clean_pipeline_env(moto_endpoint, monkeypatch, tmp_path)


def clean_pipeline_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path) -> dict:
    """Reset the emulator; set the pipeline's variables, its warehouse and Dagster home in
    `tmp_path`. For fixtures of any scope (pass a `pytest.MonkeyPatch.context()`)."""
    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    # The defaults (not this process's environment), but for these.
    settings = Settings.model_construct(
        aws_endpoint_url=moto_endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        aws_default_region="us-east-1",
        # The warehouse's data files go to the emulated lake bucket, as on AWS.
        warehouse_catalog=f"sqlite:{tmp_path / 'warehouse.sqlite'}",
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
