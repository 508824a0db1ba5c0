"""Record every AWS operation the code makes, as the IAM action and resource it needs.

Two sources, so nothing escapes:
- botocore's event hooks, on every session created while recording (boto3 in this process);
- a recording HTTP proxy on loopback in front of the emulator (stock_pipeline/fault_proxy.py
  with no faults), for what does not use botocore:
  DuckDB's httpfs (in this process and in dbt's subprocess) signs and sends S3 REST calls of
  its own. `AWS_ENDPOINT_URL` points at the proxy while recording, so both DuckDB and boto3 go
  through it; S3 calls seen by both are the same (action, resource) and count once.
  A process of its own (`stock-pipeline serve`) is seen by the proxy alone: its S3 calls are
  recorded there, and any other operation it makes is left in `unhooked()`, as nothing here can
  tell that call's resource.

`record(endpoint)` yields a Recorder; `recorder.stage("producer")` collects what runs inside it.
"""

import re
import threading
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlparse

import boto3
import botocore.session
import pytest

from stock_pipeline import fault_proxy
from stock_pipeline.settings import get_settings

REGION, ACCOUNT = "us-east-1", "123456789012"  # the emulator's

# botocore S3 operations -> the IAM action each needs (the Service Authorization Reference).
S3_ACTIONS = {
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "CopyObject": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "DeleteObject": "s3:DeleteObject",
    "DeleteObjects": "s3:DeleteObject",
    "ListObjects": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "GetBucketLocation": "s3:GetBucketLocation",
}
IAM_PREFIX = {"monitoring": "cloudwatch"}  # signing names that differ from the IAM prefix


@dataclass(frozen=True)
class Call:
    """One permission a call needs: an IAM action on a resource, with its condition keys."""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()


def s3_object(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


def s3_bucket(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


def list_call(bucket: str, prefix: str) -> Call:
    return Call("s3:ListBucket", s3_bucket(bucket), (("s3:prefix", prefix),))


class Recorder:
    def __init__(self):
        self.calls: dict[str, set[Call]] = defaultdict(set)
        self.current: str | None = None
        self._iterators: dict[str, str] = {}  # Kinesis shard iterator -> stream name
        # Non-S3 operations (service, operation) per component, seen by the hooks and the proxy.
        self._hooked: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self._proxied: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self._lock = threading.Lock()

    @contextmanager
    def stage(self, component: str) -> Iterator[None]:
        """Attribute every call made inside to `component`."""
        self.current = component
        try:
            yield
        finally:
            self.current = None

    def add(self, *calls: Call) -> None:
        with self._lock:
            if self.current is None:
                raise AssertionError(f"AWS call outside any component's stage: {calls}")
            self.calls[self.current].update(calls)

    def unhooked(self, component: str) -> set[tuple[str, str]]:
        """Operations other than S3 that reached the emulator but no botocore hook: made by a
        process the hooks cannot see, so their permissions went unchecked."""
        return self._proxied[component] - self._hooked[component]

    # --- botocore ---------------------------------------------------------------------------
    def before_call(self, params: dict, model, context: dict, **_) -> None:
        service = model.service_model.signing_name
        operation = model.name
        context["recorded_params"] = params
        if service != "s3":
            self._hooked[self.current].add((service, operation))
        if service == "s3":
            self.add(*self._s3_calls(operation, params))
            return
        action = f"{IAM_PREFIX.get(service, service)}:{operation}"
        self.add(Call(action, *self._resource(service, operation, params)))

    def after_call(self, parsed: dict, model, context: dict, **_) -> None:
        params = context.get("recorded_params", {})
        if model.name == "GetShardIterator" and "ShardIterator" in parsed:
            self._iterators[parsed["ShardIterator"]] = params["StreamName"]
        if model.name == "GetRecords" and parsed.get("NextShardIterator"):
            self._iterators[parsed["NextShardIterator"]] = self._iterators[params["ShardIterator"]]

    def _s3_calls(self, operation: str, params: dict) -> list[Call]:
        if operation not in S3_ACTIONS:
            raise AssertionError(f"S3 {operation}: add the IAM action it needs to S3_ACTIONS")
        action, bucket = S3_ACTIONS[operation], params["Bucket"]
        if action == "s3:ListBucket":
            return [list_call(bucket, params.get("Prefix", ""))]
        if action in ("s3:GetBucketLocation",):
            return [Call(action, s3_bucket(bucket))]
        if operation == "DeleteObjects":
            return [Call(action, s3_object(bucket, o["Key"])) for o in params["Delete"]["Objects"]]
        return [Call(action, s3_object(bucket, params["Key"]))]

    def _resource(self, service: str, operation: str, params: dict) -> tuple:
        if service == "kinesis":
            stream = params.get("StreamName") or (params.get("StreamARN") or "").rsplit("/")[-1]
            if not stream and "ShardIterator" in params:
                stream = self._iterators[params["ShardIterator"]]
            return (f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{stream}",)
        if service == "sns":
            return (params.get("TopicArn") or params.get("TargetArn") or "*",)
        if service == "monitoring":  # PutMetricData has no resource; its namespace is a condition
            return ("*", (("cloudwatch:namespace", params["Namespace"]),))
        if service == "sqs":
            name = params.get("QueueName") or params["QueueUrl"].rstrip("/").rsplit("/")[-1]
            return (f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}",)
        raise AssertionError(f"{service}:{operation}: teach the recorder its resource")

    # --- S3 REST, seen by the proxy ---------------------------------------------------------
    def http_request(self, method: str, path: str, headers, body: bytes) -> None:
        authorization = headers.get("Authorization", "")
        scope = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", authorization)
        if not scope:
            return  # the emulator's own API (moto-api), not AWS
        if scope.group(1) != "s3":  # botocore's hooks record it, if they saw it
            with self._lock:
                self._proxied[self.current].add((scope.group(1), _operation(path, headers, body)))
            return
        url = urlparse(path)
        query = parse_qs(url.query, keep_blank_values=True)
        bucket, _, key = unquote(url.path.lstrip("/")).partition("/")
        if not key:
            if method == "POST" and "delete" in query:
                keys = [e.text for e in ET.fromstring(body).iter() if e.tag.endswith("Key")]
                self.add(*(Call("s3:DeleteObject", s3_object(bucket, k)) for k in keys))
            elif "location" in query:
                self.add(Call("s3:GetBucketLocation", s3_bucket(bucket)))
            elif method in ("GET", "HEAD"):
                self.add(list_call(bucket, query.get("prefix", [""])[0]))
            else:
                raise AssertionError(f"S3 {method} {path}: teach the recorder its action")
            return
        if method in ("GET", "HEAD"):
            self.add(Call("s3:GetObject", s3_object(bucket, key)))
        elif method in ("PUT", "POST"):
            self.add(Call("s3:PutObject", s3_object(bucket, key)))
            if source := headers.get("x-amz-copy-source"):
                self.add(Call("s3:GetObject", f"arn:aws:s3:::{unquote(source).lstrip('/')}"))
        elif method == "DELETE":
            action = "s3:AbortMultipartUpload" if "uploadId" in query else "s3:DeleteObject"
            self.add(Call(action, s3_object(bucket, key)))
        else:
            raise AssertionError(f"S3 {method} {path}: teach the recorder its action")


def _operation(path: str, headers, body: bytes) -> str:
    """The operation of a JSON, query or RPC v2 (CBOR) request."""
    if target := headers.get("X-Amz-Target"):
        return target.rsplit(".", 1)[-1]
    if "/operation/" in path:
        return path.rsplit("/operation/", 1)[-1].split("?")[0]
    form = parse_qs(urlparse(path).query) | parse_qs(body.decode("utf-8", "replace"))
    return form.get("Action", ["?"])[0]


@contextmanager
def record(upstream: str) -> Iterator[Recorder]:
    """Record every AWS call made in this process or its children, until the block ends."""
    recorder = Recorder()
    # The fault proxy's forwarding, with no faults: every request recorded, then passed on.
    server = fault_proxy.start(
        upstream, s3_error_rate=0, kinesis_throttle_rate=0, on_request=recorder.http_request
    )
    make_session = botocore.session.get_session

    def recorded_session(*args, **kwargs):
        session = make_session(*args, **kwargs)
        session.register("before-parameter-build", recorder.before_call)
        session.register("after-call", recorder.after_call)
        return session

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("AWS_ENDPOINT_URL", server.url)
            get_settings.cache_clear()
            patch.setattr(botocore.session, "get_session", recorded_session)
            patch.setattr(boto3, "DEFAULT_SESSION", None)  # the next boto3.client() is recorded
            yield recorder
    finally:
        server.shutdown()
        server.server_close()
