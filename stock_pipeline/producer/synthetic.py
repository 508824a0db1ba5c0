"""A seeded synthetic market: random-walk prices, U-shaped intraday volume, optional faults.

Deterministic for a (seed, start): the same arguments give the same ticks, event ids included.
Generation is vectorised with numpy in batches; only the final dicts are built per tick.
"""

import math
import uuid
import zlib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

import numpy as np

from stock_pipeline.wire import SCHEMA_VERSION

INJECTIONS = ("price_jump", "volume_spike", "stale")
PRICE_JUMP = 1.08  # the first symbol's level moves +8% and stays
VOLUME_SPIKE = 30  # the second symbol's tick volumes x30 for one minute
STALE_FOR = timedelta(minutes=15)  # the third symbol goes quiet this long
STALE_SYMBOL = INJECTIONS.index("stale")  # injection k acts on symbol k

SESSION_OPEN_UTC = timedelta(hours=13, minutes=30)  # 09:30 New York (EST)
SESSION_MINUTES = 390
TRADING_SECONDS_PER_YEAR = 252 * SESSION_MINUTES * 60
BATCH = 4096
_ID_NAMESPACE = uuid.UUID("5b3f7c1e-2a41-4c57-9a6e-0d5d3c1b7e21")


def intraday_volume_factor(ts_seconds: np.ndarray) -> np.ndarray:
    """U-shaped volume profile: about 4x at the open and close, 1x at midday."""
    day_seconds = np.mod(ts_seconds - SESSION_OPEN_UTC.total_seconds(), 86_400)
    x = np.clip(day_seconds / (SESSION_MINUTES * 60), 0.0, 1.0)
    return 1.0 + 3.0 * (2.0 * x - 1.0) ** 2


class SyntheticMarket:
    def __init__(
        self,
        symbols: list[str],
        seed: int = 7,
        start: datetime | None = None,
        ticks_per_second: float = 50.0,
        inject: Iterable[str] = (),
        inject_after: timedelta = timedelta(minutes=10),
    ):
        self.inject = set(inject)
        unknown = self.inject - set(INJECTIONS)
        if unknown:
            raise ValueError(f"unknown injection(s) {sorted(unknown)}; choose from {INJECTIONS}")
        # Injection k acts on symbol k (price_jump: first, volume_spike: second, stale: third).
        needed = max((INJECTIONS.index(name) + 1 for name in self.inject), default=1)
        if len(symbols) < needed:
            raise ValueError(f"injections {sorted(self.inject)} need at least {needed} symbols")
        self.symbols = list(symbols)
        self.seed = seed
        self.start = (start or datetime.now(UTC)).astimezone(UTC)
        self.ticks_per_second = ticks_per_second
        self.inject_at = self.start + inject_after

        rng = np.random.default_rng(seed)
        n = len(self.symbols)
        self._rng = rng
        # Each symbol starts at its own level whatever the seed: a restarted producer trades
        # near the prices already in the warehouse, not at a level its checks find implausible.
        # The seed's level draw is still made, so a seed's walks and volumes stay the same.
        rng.uniform(20.0, 500.0, n)
        self._log_price = np.log([20.0 + zlib.crc32(s.encode()) % 480 for s in self.symbols])
        annual_vol = rng.uniform(0.15, 0.55, n)
        seconds_between_ticks = n / ticks_per_second  # per symbol, on average
        self._sigma = annual_vol * math.sqrt(seconds_between_ticks / TRADING_SECONDS_PER_YEAR)
        self._lot = rng.choice([1, 5, 10, 25], n)
        self._emitted = 0  # ticks generated so far

    def ticks(self, count: int | None = None, until: datetime | None = None) -> Iterator[dict]:
        """Yield up to `count` ticks, or those with event time before `until`, in time order."""
        yielded = 0
        while count is None or yielded < count:
            for tick in self._batch():
                if until is not None and tick["_ts"] >= until:
                    return
                del tick["_ts"]
                yield tick
                yielded += 1
                if count is not None and yielded >= count:
                    return

    def _batch(self) -> list[dict]:
        rng, n = self._rng, len(self.symbols)
        seq = np.arange(self._emitted, self._emitted + BATCH)
        self._emitted += BATCH
        offsets_us = np.round(seq * 1e6 / self.ticks_per_second).astype(np.int64)
        start_us = int(self.start.timestamp() * 1e6)
        ts_us = start_us + offsets_us
        idx = rng.integers(0, n, BATCH)
        inject_us = int(self.inject_at.timestamp() * 1e6)
        if "stale" in self.inject:
            # The silent symbol's turns go to the others: every slot of event time still has a
            # tick, so event time keeps pace with the producer's wall-clock rate.
            quiet_us = int(STALE_FOR.total_seconds() * 1e6)
            quiet = (idx == STALE_SYMBOL) & (ts_us >= inject_us) & (ts_us < inject_us + quiet_us)
            others = rng.integers(0, n - 1, BATCH)
            idx = np.where(quiet, others + (others >= STALE_SYMBOL), idx)

        # Random walk per symbol: each tick moves its own symbol's log price.
        steps = rng.standard_normal(BATCH) * self._sigma[idx]
        log_price = np.empty(BATCH)
        for s in range(n):
            mask = idx == s
            if mask.any():
                path = self._log_price[s] + np.cumsum(steps[mask])
                log_price[mask] = path
                self._log_price[s] = path[-1]

        if "price_jump" in self.inject:
            log_price += math.log(PRICE_JUMP) * ((idx == 0) & (ts_us >= inject_us))
        price = np.round(np.exp(log_price), 2)
        half_spread = np.maximum(np.round(price * 0.0001, 2), 0.01)

        volume_factor = intraday_volume_factor(ts_us / 1e6)
        volume = self._lot[idx] * np.maximum(1, rng.poisson(4.0 * volume_factor))
        if "volume_spike" in self.inject:
            spiking = (idx == 1) & (ts_us >= inject_us) & (ts_us < inject_us + 60_000_000)
            volume = np.where(spiking, volume * VOLUME_SPIKE, volume)

        iso = np.datetime_as_string(ts_us.astype("datetime64[us]"), unit="us")
        id_prefix = f"{self.seed}:{self.start.isoformat()}:"
        return [
            {
                "event_id": str(uuid.uuid5(_ID_NAMESPACE, id_prefix + str(seq[i]))),
                "symbol": self.symbols[idx[i]],
                "ts": iso[i] + "+00:00",
                "price": float(price[i]),
                "volume": int(volume[i]),
                "bid": float(round(price[i] - half_spread[i], 2)),
                "ask": float(round(price[i] + half_spread[i], 2)),
                "source": "synthetic",
                "schema_version": SCHEMA_VERSION,
                "_ts": datetime.fromtimestamp(ts_us[i] / 1e6, UTC),
            }
            for i in range(BATCH)
        ]
