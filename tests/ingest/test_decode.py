"""decode_records: every record accounted for, each valid tick keeps its own record's metadata."""

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from stock_pipeline.defs.ingest.decode import decode_records
from stock_pipeline.producer.synthetic import SyntheticMarket
from stock_pipeline.settings import get_settings
from stock_pipeline.wire import encode_tick


def meta_for(count: int) -> pa.Table:
    return pa.table(
        {
            "shard_id": ["shardId-000000000000"] * count,
            "sequence_number": [str(i) for i in range(count)],
            "arrival_ts": pa.array(
                [datetime(2024, 3, 5, 16, tzinfo=UTC)] * count, pa.timestamp("ms", tz="UTC")
            ),
        }
    )


def test_ticks_keep_their_metadata_around_refused_records():
    ticks = list(
        SyntheticMarket(["AAPL", "MSFT"], start=datetime(2024, 3, 5, tzinfo=UTC)).ticks(count=50)
    )
    data = [encode_tick(t) for t in ticks]
    # Refused by the bulk reader in different ways, and one valid record it cannot frame
    # (leading whitespace, spread over lines) that the one-by-one lane accepts.
    data[3] = b"nope"
    data[10] = data[10].replace(b'"price":', b'"price":"').replace(b',"volume"', b'","volume"')
    data[20] = b"  " + data[20].replace(b",", b",\n")
    data[30] = encode_tick({**ticks[30], "symbol": "bad symbol"})
    data[40] = encode_tick(ticks[40]) + encode_tick(ticks[41])  # two objects in one record

    good, bad = decode_records(data, meta_for(len(data)))

    assert dict(
        zip(
            bad.column("sequence_number").to_pylist(), bad.column("reason").to_pylist(), strict=True
        )
    ) == {
        "3": "not_json",
        "10": "wrong_type:price",
        "30": "bad_symbol",
        "40": "not_json",
    }
    assert good.num_rows + bad.num_rows == len(data)
    expected = {str(i): t for i, t in enumerate(ticks) if str(i) not in {"3", "10", "30", "40"}}
    assert good.column("sequence_number").to_pylist() == list(expected)  # order kept
    for row in good.to_pylist():
        tick = expected[row["sequence_number"]]
        assert row["event_id"] == tick["event_id"] and row["price"] == tick["price"]
        assert row["ts"] == datetime.fromisoformat(tick["ts"])


def test_event_time_beyond_the_allowed_skew_after_arrival_is_quarantined(monkeypatch):
    arrival = datetime(2024, 3, 5, 16, tzinfo=UTC)
    template = next(iter(SyntheticMarket(["AAPL"], start=arrival).ticks(count=1)))
    ahead = {"on-time": 0, "at-limit": 300, "just-past": 300.001, "tomorrow": 86_400}
    data = [
        encode_tick(
            {**template, "event_id": name, "ts": (arrival + timedelta(seconds=s)).isoformat()}
        )
        for name, s in ahead.items()
    ]

    good, bad = decode_records(data, meta_for(len(data)))
    assert good.column("event_id").to_pylist() == ["on-time", "at-limit"]
    assert bad.column("sequence_number").to_pylist() == ["2", "3"]
    assert set(bad.column("reason").to_pylist()) == {"future_timestamp"}

    # The bound follows MAX_FUTURE_SKEW_SECONDS, or the argument when given.
    monkeypatch.setenv("MAX_FUTURE_SKEW_SECONDS", "86400")
    get_settings.cache_clear()
    assert decode_records(data, meta_for(len(data)))[1].num_rows == 0
    assert decode_records(data, meta_for(len(data)), max_future_skew_seconds=0)[0].num_rows == 1
