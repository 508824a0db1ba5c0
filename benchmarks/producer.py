"""Producer throughput into the emulator (2 shards): one PutRecords call at a time against
several in flight, for the synthetic market and a CSV replay.

The baseline (max_in_flight=1) is measured in the same run. The figures are ticks per second
put, end to end: generation or CSV parsing, JSON encoding and the HTTP calls.
"""

import logging
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pandas as pd
from moto.server import ThreadedMotoServer

from stock_pipeline.emulator import patch_kinesis_shards
from stock_pipeline.producer.kinesis import KinesisProducer
from stock_pipeline.producer.sources import csv_ticks
from stock_pipeline.producer.synthetic import SyntheticMarket

COUNT = int(sys.argv[1]) if len(sys.argv) > 1 else 40_000
ROUND = 2_000  # ticks handed to put_ticks at once, as `produce` does at --rate 8000
SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "JPM", "XOM", "KO"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def put_rate(client, stream: str, ticks, max_in_flight: int) -> float:
    producer = KinesisProducer(client, stream, max_in_flight=max_in_flight)
    started = time.monotonic()
    batch = []
    for tick in ticks:
        batch.append(tick)
        if len(batch) == ROUND:
            producer.put_ticks(batch)
            batch = []
    producer.put_ticks(batch)
    return producer.stats.sent / (time.monotonic() - started)


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    patch_kinesis_shards()  # as `stock-pipeline local-aws` runs it
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    client = boto3.client(
        "kinesis",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    try:
        with tempfile.TemporaryDirectory() as folder:
            csv = Path(folder) / "ticks.csv"
            market = SyntheticMarket(SYMBOLS, start=datetime(2024, 3, 5, 14, 30, tzinfo=UTC))
            pd.DataFrame(list(market.ticks(count=COUNT))).drop(
                columns=["event_id", "source", "schema_version"]
            ).to_csv(csv, index=False)
            print(f"{COUNT} ticks per measurement, {ROUND} per put_ticks call, 2 shards")
            for name, source in [
                ("synthetic", lambda: SyntheticMarket(SYMBOLS, seed=1).ticks(count=COUNT)),
                ("csv replay", lambda: iter(csv_ticks(str(csv)))),
            ]:
                rates = {}
                for in_flight in (1, 4, 8):
                    stream = f"bench-{name.replace(' ', '-')}-{in_flight}"
                    client.create_stream(StreamName=stream, ShardCount=2)
                    client.get_waiter("stream_exists").wait(StreamName=stream)
                    rates[in_flight] = put_rate(client, stream, source(), in_flight)
                figures = ", ".join(f"{n} in flight {r:,.0f} ticks/s" for n, r in rates.items())
                print(f"{name:11} {figures}; 8 vs 1: {rates[8] / rates[1]:.2f}x")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
