"""DuckDB connections that can read the S3 lake through httpfs, offline.

DuckDB normally downloads httpfs from its own site; here it comes from the
`duckdb-extension-httpfs` package pinned to the same DuckDB version.
"""

import os
from urllib.parse import urlparse

import boto3
import duckdb
import duckdb_extensions


def load_httpfs(con: duckdb.DuckDBPyConnection) -> None:
    duckdb_extensions.import_extension("httpfs", con=con)
    con.execute("load httpfs")


def s3_secret_options() -> dict[str, str]:
    """S3 secret options from the same environment boto3 reads.

    With `AWS_ENDPOINT_URL` set (the emulator), its keys, path-style URLs and the endpoint's
    scheme. On AWS, the credentials boto3's own chain resolves (environment, profile, SSO,
    instance role), so DuckDB and boto3 always act as the same identity; DuckDB's
    `credential_chain` provider would need its `aws` extension, which is not installed.
    """
    session = boto3.session.Session()
    region = session.region_name or "us-east-1"
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        credentials = session.get_credentials()
        if credentials is None:  # dbt parse, lint and docs need no lake; reads will say why
            return {"type": "s3", "region": region}
        frozen = credentials.get_frozen_credentials()
        options = {"type": "s3", "key_id": frozen.access_key, "secret": frozen.secret_key}
        if frozen.token:
            options["session_token"] = frozen.token
        return {**options, "region": region}
    parsed = urlparse(endpoint)
    return {
        "type": "s3",
        "key_id": os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        "secret": os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        "region": region,
        "endpoint": parsed.netloc,
        "url_style": "path",
        "use_ssl": str(parsed.scheme == "https").lower(),
    }


def attach_lake(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Make `s3://` paths readable on `con`."""
    load_httpfs(con)
    options = s3_secret_options()
    # Secret options cannot be bound as parameters; they are quoted as SQL string literals.
    body = ", ".join(
        f"{k} {v}" if k == "type" else f"{k} '{v.replace(chr(39), chr(39) * 2)}'"
        for k, v in options.items()
    )
    con.execute(f"create or replace secret lake_s3 ({body})")
    return con
