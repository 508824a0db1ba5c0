"""boto3 clients configured the dagster-aws way.

`endpoint_url` left unset means boto3 reads `AWS_ENDPOINT_URL` itself (the emulator locally,
nothing on AWS), so the same code runs against both.
"""

from typing import Any

import boto3
from botocore.config import Config
from dagster_aws.utils import ResourceWithBoto3Configuration, construct_boto_client_retry_config


class AwsResource(ResourceWithBoto3Configuration):
    """Base for the pipeline's AWS resources: one place for session, endpoint and retries.

    Retries use botocore's "standard" mode (throttling and 5xx, with backoff), `max_attempts`
    times in all.
    """

    def boto_client(self, service_name: str, config: Config | None = None) -> Any:
        """A client for `service_name`; `config` adds to the retry settings (e.g. timeouts)."""
        session = boto3.session.Session(
            profile_name=self.profile_name,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            aws_session_token=self.aws_session_token,
            region_name=self.region_name,
        )
        return session.client(
            service_name,
            endpoint_url=self.endpoint_url,
            use_ssl=self.use_ssl,
            verify=self.verify,
            config=construct_boto_client_retry_config(self.max_attempts).merge(config or Config()),
        )


class KinesisResource(AwsResource):
    """The ticks stream."""

    stream_name: str

    def get_client(self) -> Any:
        return self.boto_client("kinesis")


class LakeResource(AwsResource):
    """The S3 Parquet lake: a bucket and an optional key prefix."""

    bucket: str
    prefix: str = ""

    def get_client(self) -> Any:
        return self.boto_client("s3")

    def key(self, *parts: str) -> str:
        """Object key under the lake prefix."""
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p and p.strip("/"))

    def url(self, *parts: str) -> str:
        return f"s3://{self.bucket}/{self.key(*parts)}"
