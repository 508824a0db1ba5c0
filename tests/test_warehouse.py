"""DuckDB reads the lake as boto3 would: the emulator locally, boto3's credential chain on AWS."""

import pytest

from stock_pipeline.resources.warehouse import s3_secret_options
from stock_pipeline.settings import get_settings


def test_emulator_secret_uses_the_endpoint(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    get_settings.cache_clear()
    options = s3_secret_options()
    assert options["endpoint"] == "127.0.0.1:4566"
    assert options["url_style"] == "path" and options["use_ssl"] == "false"
    assert options["region"] == "eu-west-1"


def test_aws_secret_carries_boto3s_resolved_credentials(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "example-token")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    get_settings.cache_clear()
    options = s3_secret_options()
    assert options == {
        "type": "s3",
        "key_id": "AKIDEXAMPLE",
        "secret": "example-secret",
        "session_token": "example-token",
        "region": "us-west-2",
    }
