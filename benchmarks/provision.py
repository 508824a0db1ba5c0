"""`provision` on the emulator, as every test's `provisioned` fixture calls it.

Deploying infra/stack.yaml through CloudFormation (moto parses it server-side and creates about
twenty resources, then provision creates the types moto skips) is timed against the baseline
of the direct API calls that made the pipeline's four resources before the template: stream,
bucket, topic, queue and its subscription. Both on a freshly reset emulator, in the same run.
Usage: python benchmarks/provision.py [repeats]
"""

import json
import statistics
import sys
import time
import urllib.request

import boto3
from dbt_benchlib import emulator

from stock_pipeline.provision import provision
from stock_pipeline.settings import get_settings


def direct_calls() -> None:
    """The pipeline's resources made one API call at a time, without the template."""
    session = boto3.session.Session()
    kinesis = session.client("kinesis")
    kinesis.create_stream(StreamName=get_settings().ticks_stream, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=get_settings().ticks_stream)
    session.client("s3").create_bucket(Bucket=get_settings().lake_bucket)
    sns, sqs = session.client("sns"), session.client("sqs")
    topic_arn = sns.create_topic(Name=get_settings().alerts_topic)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=get_settings().alerts_queue)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    statement = {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": queue_arn}
    policy = {"Statement": [statement]}
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)


def timed(make, endpoint: str, repeats: int) -> list[float]:
    timings = []
    for _ in range(repeats):
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
        started = time.perf_counter()
        make()
        timings.append(time.perf_counter() - started)
    return timings


def main(repeats: int) -> None:
    with emulator() as endpoint:
        # Warm: imports, botocore's models, the parsed template.
        timed(lambda: provision(shard_count=2), endpoint, 1)
        timed(direct_calls, endpoint, 1)
        baseline = timed(direct_calls, endpoint, repeats)
        stack = timed(lambda: provision(shard_count=2), endpoint, repeats)
    for name, timings in (("direct API calls (baseline)", baseline), ("stack", stack)):
        print(
            f"{name:>28}: median {statistics.median(timings) * 1000:.0f} ms, "
            f"fastest {min(timings) * 1000:.0f} ms over {repeats}"
        )
    ratio = statistics.median(stack) / statistics.median(baseline)
    print(f"stack / baseline: {ratio:.1f}x median, {min(stack) / min(baseline):.1f}x fastest")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
