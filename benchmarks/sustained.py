"""Sustained load: the real stack fed at 500, 1,000, 2,000 and 4,000 ticks/s, each for SECONDS.

Runs the real stack as freshness.py does (stack_benchlib.py): the emulator (`stock-pipeline
local-aws`, TICKS_STREAM_SHARDS shards) and `dagster dev` with the default settings, warmed up
with probe ticks until a first `latest_quotes`. Then, for each rate in turn, the real producer
(`stock-pipeline produce --rate RATE`, the synthetic market over SYMBOLS) runs as a process of its
own for SECONDS and is stopped by its pid, while a probe tick is put every PROBE_EVERY seconds
(freshness.py's probes) and the CPU time of every process started is read from /proc every
CPU_EVERY seconds. Between rates the pipeline gets up to SETTLE_LIMIT seconds to take in what was
put (the lake's row count, read as drain.py does); after the last one it waits for the lake and
the marts to hold every tick put, stops every process it started, and reads from
`stg_lake__ticks`, per tick, its Kinesis arrival (`arrival_ts`), when a raw_ticks run read it
(`ingested_at`) and when dbt loaded it (`loaded_at`): progress measured without disturbing the
writer. Prints per rate: the put rate from the stream against the rate asked; the lag behind the
stream at the start and at the end of the phase (means over the first and the last third of what
follows its first quarter): ticks put and not yet read into the lake / loaded by dbt, and the age
of the newest tick there; lake and marts throughput against the put rate; freshness p50/p95 of the
probes against the 30 s target and against the first rate's; CPU seconds and % of one core per
process, and what processes not started here took. Then, from those figures, which component
saturates first at each rate, and where a raw_ticks_job run spends its time. Exits non-zero if a
process of the stack exits, a run fails or the time limit passes.
Usage: python benchmarks/sustained.py [rates (500 1000 2000 4000)] [--seconds S (180)]
       [--time-limit SECONDS (enough for the rates)]
"""

import argparse
import dataclasses
import os
import re
import subprocess
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import numpy as np
from stack_benchlib import (
    CLI,
    Deadline,
    LakeRows,
    Probes,
    Stack,
    latest_quotes_times,
    print_percentiles,
    run_legs,
)

from stock_pipeline.resources.warehouse import connect
from stock_pipeline.settings import get_settings

RATES = [500, 1_000, 2_000, 4_000]
TARGET_RATE = 2_000  # ticks/s to keep up with (issue #12)
TARGET_P95 = 30.0  # seconds, put -> latest_quotes
PROBE_EVERY = 4.0
CPU_EVERY = 0.5
POLL_EVERY = 2.0
PROGRESS_EVERY = 30.0
WARM_UP_LIMIT = 300.0
SETTLE_LIMIT = 120.0
DRAIN_LIMIT = 600.0
# Verdicts: a put rate this far below the one asked is the source falling short; a lag whose
# newest tick ages this much more from the first third to the last is not bounded.
SHORT_OF_RATE = 0.95
LAG_GROWTH_SLACK = 10.0
# One Python process (GIL-bound) at this share of a core is saturated; the machine at this share
# of all its cores.
FULL_CORE = 0.85
FULL_MACHINE = 0.90
# Processes not started here using this share of a core make the figures ones under contention.
SHARED_MACHINE = 0.25
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]

PRODUCER, EMULATOR, DAGSTER = "producer", "emulator", "dagster"
RUN_WORKERS, DBT = "run workers", "dbt (started by runs)"
HELPER = "run worker helper"  # what a run worker starts besides dbt (its compute logs' tail)
ROLES = [
    PRODUCER,
    EMULATOR,
    "dagster dev",
    "dagster webserver",
    "dagster daemon",
    "code server (sensor evaluations)",
    RUN_WORKERS,
    DBT,
    "dagster, other",
    "this benchmark (probes, polls)",
]
STAGES = ("lake", "marts")
SINGLE_PROCESSES = [PRODUCER, EMULATOR, *ROLES[2:6]]
PIPELINE = ROLES[2:9]


def dagster_role(argv: list[str]) -> str:
    """Which of `dagster dev`'s processes (or what it started) this is, from its command line."""
    text = " ".join(argv[:5])  # the program and subcommand, not the JSON arguments after them
    # The code server starts each run in a process of multiprocessing's "spawn" context.
    if "spawn_main" in text or "execute_run" in text:
        return RUN_WORKERS
    if any(Path(arg).name == "dbt" for arg in argv[:2]):  # the script, or python running it
        return DBT
    if "webserver" in text:
        return "dagster webserver"
    if "daemon" in text:
        return "dagster daemon"
    if "grpc" in text or "code-server" in text or "code_server" in text:
        return "code server (sensor evaluations)"
    if " dev " in f"{text} ":
        return "dagster dev"
    return "dagster, other"


def read_stat(pid: int) -> tuple[int, int, float, float] | None:
    """ppid, start time (clock ticks after boot), own CPU seconds, and those of the children it
    has waited for: /proc/<pid>/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone since the listing
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (
        int(fields[1]),
        int(fields[19]),
        (utime + stime) / CLOCK_TICKS,
        (cutime + cstime) / CLOCK_TICKS,
    )


def machine_busy() -> float:
    """CPU seconds all cores have spent not idle since boot (/proc/stat)."""
    user, nice, system, idle, iowait, irq, softirq, steal = (
        int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


@dataclasses.dataclass
class Proc:
    role: str
    ppid: int
    own: float  # CPU seconds of the process itself, at its last sample
    children: float  # of its children it has waited for
    worker: tuple[int, int] | None  # the run worker it descends from
    alive: bool = True


@dataclasses.dataclass
class CpuSnapshot:
    machine: float
    procs: dict[tuple[int, int], Proc]  # (pid, start time): a pid can be reused


class CpuMonitor(threading.Thread):
    """Samples /proc every CPU_EVERY seconds: every process descended from one started here, by
    role. A process's last sample stays once it has exited; what it spent after it is lost, except
    for dbt, counted through the run worker that waited for it (its children's seconds)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.roots: dict[int, str] = {os.getpid(): ROLES[-1]}
        self.procs: dict[tuple[int, int], Proc] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def watch(self, process: subprocess.Popen, role: str) -> None:
        with self.lock:
            self.roots[process.pid] = role

    def run(self) -> None:
        while not self.stopping.wait(CPU_EVERY):
            self.sample()

    def sample(self) -> None:
        stats = {
            int(entry.name): stat
            for entry in os.scandir("/proc")
            if entry.name.isdigit() and (stat := read_stat(int(entry.name)))
        }
        with self.lock:
            for proc in self.procs.values():
                proc.alive = False
            for pid, (ppid, start, own, children) in stats.items():
                if proc := self.procs.get((pid, start)):
                    proc.own, proc.children, proc.alive = own, children, True
                elif role := self.role(pid, stats):
                    self.procs[pid, start] = Proc(
                        role, ppid, own, children, self.worker(pid, stats)
                    )

    def role(self, pid: int, stats: dict) -> str | None:
        ancestor = pid
        while ancestor not in self.roots:
            if ancestor not in stats or ancestor <= 1:
                return None
            ancestor = stats[ancestor][0]
        if ancestor == os.getpid() and pid != ancestor:
            return None  # a child of this process not started as a root: none is
        if self.roots[ancestor] != DAGSTER:
            return self.roots[ancestor]
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return None
        role = dagster_role(argv.rstrip("\0").split("\0"))
        if role not in (RUN_WORKERS, DBT) and self.worker(pid, stats):
            return HELPER
        return role

    def worker(self, pid: int, stats: dict) -> tuple[int, int] | None:
        """The run worker `pid` descends from, if any."""
        ancestor = stats[pid][0]
        while ancestor in stats and ancestor > 1:
            key = (ancestor, stats[ancestor][1])
            if (proc := self.procs.get(key)) and proc.role == RUN_WORKERS:
                return key
            ancestor = stats[ancestor][0]
        return None

    def snapshot(self) -> CpuSnapshot:
        self.sample()
        with self.lock:
            procs = {key: dataclasses.replace(proc) for key, proc in self.procs.items()}
        return CpuSnapshot(machine_busy(), procs)


def cpu_seconds(start: CpuSnapshot, end: CpuSnapshot) -> dict[str, float]:
    """CPU seconds per role between two snapshots, and the machine's in all.

    A run worker's descendants are counted exactly: those it waited for and those alive. What its
    helpers were seen to spend goes to the run workers, the rest to dbt (the tail of each process
    after its last sample included)."""
    seconds: dict[str, float] = defaultdict(float)
    helpers: dict[tuple[int, int], float] = defaultdict(float)

    def descendants(snapshot: CpuSnapshot, worker: tuple[int, int]) -> float:
        proc = snapshot.procs.get(worker)
        if proc is None:
            return 0.0
        alive = sum(
            child.own + child.children
            for child in snapshot.procs.values()
            if child.ppid == worker[0] and child.worker == worker and child.alive
        )
        return proc.children + alive

    for key, proc in end.procs.items():
        before = start.procs.get(key)
        spent = proc.own - (before.own if before else 0.0)
        if proc.role == HELPER:
            helpers[proc.worker] += spent
            seconds[RUN_WORKERS] += spent
        elif proc.role != DBT or proc.worker is None:
            seconds[proc.role] += spent
    for key, proc in end.procs.items():
        if proc.role == RUN_WORKERS:
            seconds[DBT] += descendants(end, key) - descendants(start, key) - helpers[key]
    seconds["machine"] = end.machine - start.machine
    return seconds


@dataclasses.dataclass
class Phase:
    rate: int
    started: float  # time.time() when the producer was started
    stopped: float  # and when it was stopped
    sent: int  # the producer's own count
    resent: int
    cpu: dict[str, float]
    caught_up: float | None  # seconds after the stop until the lake held every tick put


def producer_counts(log: Path) -> tuple[int, int]:
    """Ticks sent and re-sent, from the producer's last line (or its last progress line)."""
    text = log.read_text()
    if done := re.findall(r"done: sent (\d+) records in \d+ PutRecords calls, (\d+) re-sent", text):
        return int(done[-1][0]), int(done[-1][1])
    if progress := re.findall(r"sent (\d+)  rate \S+  retried (\d+)", text):
        return int(progress[-1][0]), int(progress[-1][1])
    return 0, 0


def wait_until(
    stack: Stack, deadline: Deadline, condition, limit: float, doing: str
) -> float | None:
    """Seconds until `condition()`, or None after `limit`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > limit:
            return None
        deadline.check(doing)
        stack.check_running(doing)
        time.sleep(POLL_EVERY)
    return time.monotonic() - started


def run_phase(
    stack: Stack, monitor: CpuMonitor, probes: Probes, lake: LakeRows, rate: int, seconds: float,
    seed: int, deadline: Deadline,
) -> Phase:  # fmt: skip
    """The producer at `rate` for `seconds`, probes put meanwhile; stopped by its pid."""
    log = stack.tmp / f"producer-{rate}.log"
    cpu_start = monitor.snapshot()
    started = time.time()
    producer = stack.start(log.stem, *CLI, "produce", "--rate", str(rate), "--seed", str(seed))
    monitor.watch(producer, PRODUCER)
    end = time.monotonic() + seconds
    next_probe = time.monotonic()
    next_progress = time.monotonic() + PROGRESS_EVERY
    while (now := time.monotonic()) < end:
        doing = f"feeding {rate:,} ticks/s"
        deadline.check(doing)
        stack.check_running(doing)
        if now >= next_probe:
            probes.put()
            next_probe += PROBE_EVERY
        if now >= next_progress:
            next_progress += PROGRESS_EVERY
            sent, _ = producer_counts(log)
            print(
                f"  {time.time() - started:5.0f} s: {sent:>9,} sent (the producer's last report),"
                f" {lake.poll():>9,} in the lake",
                flush=True,
            )
        time.sleep(max(0.0, min(next_probe, next_progress, end) - time.monotonic()))
    cpu_end = monitor.snapshot()
    stopped = time.time()
    stack.stop(producer)
    sent, resent = producer_counts(log)
    return Phase(rate, started, stopped, sent, resent, cpu_seconds(cpu_start, cpu_end), None)


class Progress:
    """Ticks put (arrival) and read into the lake / loaded by dbt, from the final staging table;
    probes included, as records on the stream, except in the put rate."""

    def __init__(self, ticks: dict[str, np.ndarray]):
        arrival = ticks["arrival"]
        self.arrival = np.sort(arrival)
        self.produced = np.sort(arrival[~ticks["probe"]])
        self.done = {}
        for stage in STAGES:
            order = np.argsort(ticks[stage], kind="stable")
            # The newest arrival among the ticks a stage holds at each point in time.
            self.done[stage] = (ticks[stage][order], np.maximum.accumulate(arrival[order]))

    def put(self, at: float) -> int:
        return int(np.searchsorted(self.arrival, at, side="right"))

    def lag(self, stage: str, at: float) -> tuple[int, float]:
        """Ticks put and not in the stage yet, and how old the newest tick it holds is."""
        held = int(np.searchsorted(self.done[stage][0], at, side="right"))
        newest = self.done[stage][1][held - 1] if held else np.nan
        return self.put(at) - held, at - newest

    def produced_between(self, since: float, until: float) -> tuple[int, float]:
        """Ticks the producer put in that time, and the first one's arrival."""
        first, last = np.searchsorted(self.produced, [since, until], side="right")
        return int(last - first), float(self.produced[min(first, len(self.produced) - 1)])


@dataclasses.dataclass
class Figures:
    put_rate: float
    windows: tuple[tuple[float, float], tuple[float, float]]  # seconds into the phase
    lag: dict[str, tuple[tuple[float, float], tuple[float, float]]]  # stage -> (start, end)
    throughput: dict[str, float]
    freshness: dict[str, list[float]]
    probes: int


def figures(phase: Phase, progress: Progress, probes: Probes, instance) -> Figures:
    count, first = progress.produced_between(phase.started, phase.stopped)
    seconds = max(phase.stopped - first, 1e-9)
    # Lag at the start and at the end: means over the first and the last third of the phase
    # after its first quarter, long enough to smooth the saw-tooth of the micro-batches.
    steady = first + seconds / 4
    step = (phase.stopped - steady) / 3
    windows = ((steady, steady + step), (phase.stopped - step, phase.stopped))
    lag, throughput = {}, {}
    for stage in STAGES:
        means = []
        for since, until in windows:
            times = np.linspace(since, until, max(2, int(until - since) + 1))
            series = np.array([progress.lag(stage, at) for at in times])
            put = np.array([progress.put(at) for at in times])
            means.append((series.mean(axis=0), (put - series[:, 0]).mean(), times.mean()))
        lag[stage] = tuple(tuple(mean) for mean, _, _ in means)
        # Ticks taken in, from the mean of what the stage held in one window to the other's.
        (_, held0, at0), (_, held1, at1) = means
        throughput[stage] = (held1 - held0) / (at1 - at0)
    legs = probes.legs(instance, phase.started, phase.stopped)
    return Figures(
        count / seconds,
        tuple((a - phase.started, b - phase.started) for a, b in windows),
        lag,
        throughput,
        legs,
        probes.count(phase.started, phase.stopped),
    )


def not_ours(phase: Phase) -> float:
    """CPU seconds of the processes not started here (and of the tails the samples missed)."""
    return phase.cpu["machine"] - sum(phase.cpu.get(role, 0.0) for role in ROLES)


def verdict(phase: Phase, fig: Figures) -> tuple[bool, str]:
    """Whether the pipeline kept up at this rate, and which component saturates first, why."""
    wall = phase.stopped - phase.started
    core = {role: phase.cpu.get(role, 0.0) / wall for role in ROLES}
    machine = phase.cpu["machine"] / wall / os.cpu_count()
    pipeline = sum(core[role] for role in PIPELINE)
    other = not_ours(phase) / wall

    def bottleneck(candidates: list[str]) -> str:
        top = max(candidates, key=core.get)
        if core[top] >= FULL_CORE:
            return f"{top}, at {core[top]:.0%} of a core"
        if machine >= FULL_MACHINE:
            return f"CPU-bound: the machine at {machine:.0%}, the most {top} ({core[top]:.0%})" + (
                f", other processes {other:.0%}" if other >= SHARED_MACHINE else ""
            )
        return f"not CPU (the machine at {machine:.0%}, {top} busiest at {core[top]:.0%})"

    (_, age_start), (_, age_end) = fig.lag["marts"]
    seen = fig.freshness["put -> latest_quotes"]
    p95 = np.percentile(seen, 95) if seen else np.inf
    load = (
        f"producer {core[PRODUCER]:.0%} of a core, emulator {core[EMULATOR]:.0%}, the pipeline's "
        f"processes {pipeline:.0%}, other processes {other:.0%}, the machine {machine:.0%} of "
        f"{os.cpu_count()} cores"
    )
    if fig.put_rate < SHORT_OF_RATE * phase.rate:
        return False, (
            f"the source side, {bottleneck([PRODUCER, EMULATOR])}: put {fig.put_rate:,.0f}/s of "
            f"{phase.rate:,} asked ({fig.put_rate / phase.rate:.2f}x); {load}"
        )
    grows = age_end - age_start > LAG_GROWTH_SLACK
    if grows or p95 > TARGET_P95:
        why = (
            f"marts lag grew {age_start:.0f} s -> {age_end:.0f} s"
            if grows
            else f"freshness p95 {p95:.0f} s > {TARGET_P95:.0f} s"
        )
        # dbt steps run one at a time (pool duckdb), so dbt saturates like a single process.
        return False, f"the pipeline, {bottleneck([*SINGLE_PROCESSES, DBT])}: {why}; {load}"
    top = max([*SINGLE_PROCESSES, DBT], key=core.get)
    return True, (
        f"keeps up: marts lag {age_start:.0f} s -> {age_end:.0f} s, freshness p95 {p95:.0f} s; "
        f"{load}; closest to a full core: {top} ({core[top]:.0%})"
    )


def print_phase(phase: Phase, fig: Figures, baseline: Figures, instance) -> None:
    wall = phase.stopped - phase.started
    print(f"== {phase.rate:,} ticks/s for {wall:.0f} s")
    print(
        f"  put {fig.put_rate:,.0f} ticks/s on the stream ({fig.put_rate / phase.rate:.3f}x the "
        f"rate asked); producer sent {phase.sent:,}, re-sent {phase.resent:,}"
    )
    (a0, b0), (a1, b1) = fig.windows
    print(
        f"  lag behind the stream, means over {a0:.0f}-{b0:.0f} s and {a1:.0f}-{b1:.0f} s "
        "into the phase:"
    )
    for stage, what in zip(
        STAGES, ("not yet read into the lake", "not yet loaded by dbt"), strict=True
    ):
        (n0, age0), (n1, age1) = fig.lag[stage]
        print(
            f"    {what:<28} {n0:>9,.0f} ticks (newest {age0:5.1f} s old) -> "
            f"{n1:>9,.0f} ticks ({age1:5.1f} s)"
        )
    for stage in STAGES:
        print(
            f"  {stage} throughput {fig.throughput[stage]:,.0f} ticks/s: "
            f"{fig.throughput[stage] / fig.put_rate:.3f}x the put rate"
        )
    seen = fig.freshness["put -> latest_quotes"]
    print(f"  freshness, {len(seen)} of {fig.probes} probes seen in latest_quotes:")
    print_percentiles(fig.freshness)
    if seen and baseline.freshness["put -> latest_quotes"]:
        p95 = np.percentile(seen, 95)
        first = np.percentile(baseline.freshness["put -> latest_quotes"], 95)
        print(
            f"  put -> latest_quotes p95: {p95 / TARGET_P95:.2f}x the {TARGET_P95:.0f} s target, "
            f"{p95 / first:.2f}x that of the first rate"
        )
    records = instance.get_run_records(
        dg.RunsFilter(
            job_name="raw_ticks_job",
            created_after=datetime.fromtimestamp(phase.started, UTC),
            created_before=datetime.fromtimestamp(phase.stopped, UTC),
        )
    )
    per_run = [int(r.dagster_run.tags.get("stock_pipeline/records", 0)) for r in records]
    if per_run:
        print(
            f"  {len(per_run)} raw_ticks_job runs created, records per run p50 "
            f"{np.median(per_run):,.0f}, max {max(per_run):,}"
        )
    print(f"  CPU seconds, % of one core (sampled every {CPU_EVERY} s):")
    for role in ROLES:
        if seconds := phase.cpu.get(role, 0.0):
            print(f"    {role:<34} {seconds:7.1f} s {seconds / wall:7.1%}")
    other = not_ours(phase)
    print(f"    {'not accounted (other processes)':<34} {other:7.1f} s {other / wall:7.1%}")
    busy = phase.cpu["machine"]
    print(f"    {'machine, busy':<34} {busy:7.1f} s {busy / wall:7.1%} of {os.cpu_count() * 100}%")
    if phase.caught_up is None:
        print("  the lake had not caught up with the stream before the next rate")
    else:
        print(f"  the lake held every tick put {phase.caught_up:.0f} s after the producer stopped")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rates", nargs="*", type=int, default=RATES, help="ticks/s, in turn")
    parser.add_argument("--seconds", type=float, default=180, help="per rate")
    parser.add_argument("--time-limit", type=float, help="seconds, in all")
    args = parser.parse_args()
    rates = sorted(args.rates)
    limit = args.time_limit or (
        WARM_UP_LIMIT + len(rates) * (args.seconds + SETTLE_LIMIT) + DRAIN_LIMIT + 300
    )
    deadline = Deadline(limit)
    stack = Stack(prefix="sustained-")
    instance = stack.instance
    settings = get_settings()
    print(f"logs and state in {stack.tmp}", flush=True)
    print(
        f"rates {', '.join(f'{r:,}' for r in rates)} ticks/s, {args.seconds:.0f} s each; "
        f"{len(settings.symbols)} symbols, {settings.ticks_stream_shards} shards, "
        f"{settings.producer_max_in_flight} PutRecords in flight; "
        f"KINESIS_SENSOR_INTERVAL_SECONDS={settings.kinesis_sensor_interval_seconds}, "
        f"KINESIS_MAX_RECORDS_PER_RUN={settings.kinesis_max_records_per_run}; "
        f"{os.cpu_count()} cores; time limit {limit:.0f} s",
        flush=True,
    )
    monitor = CpuMonitor()
    phases: list[Phase] = []
    with stack:
        monitor.watch(stack.start_emulator(), EMULATOR)
        monitor.watch(stack.start_dagster(), DAGSTER)
        monitor.start()
        probes, lake = Probes(), LakeRows()
        started = time.monotonic()
        while not latest_quotes_times(instance):
            if time.monotonic() - started > WARM_UP_LIMIT:
                raise SystemExit(f"no latest_quotes after {WARM_UP_LIMIT:.0f} s")
            deadline.check("warming up")
            stack.check_running("a first latest_quotes")
            probes.put()
            time.sleep(PROBE_EVERY)
        print(f"warm-up: first latest_quotes after {time.monotonic() - started:.0f} s", flush=True)

        sent = 0
        for index, rate in enumerate(rates):
            print(f"{rate:,} ticks/s for {args.seconds:.0f} s:", flush=True)
            phase = run_phase(stack, monitor, probes, lake, rate, args.seconds, index, deadline)
            sent += phase.sent
            last = index == len(rates) - 1
            put = sent + len(probes.put_at)
            phase.caught_up = wait_until(
                stack,
                deadline,
                lambda put=put: lake.poll() >= put,
                DRAIN_LIMIT if last else SETTLE_LIMIT,
                "waiting for the lake to catch up",
            )
            if phase.caught_up is None:
                print(f"  stopped; the lake still behind: {lake.count:,} rows", flush=True)
            else:
                print(f"  stopped; the lake caught up {phase.caught_up:.0f} s later", flush=True)
            phases.append(phase)
        # The run that wrote the last lake objects builds the marts from them, with latest_quotes.
        drained = time.time()
        built = wait_until(
            stack,
            deadline,
            lambda: (
                latest_quotes_times(instance)[-1] > drained
                and not instance.get_runs_count(dg.RunsFilter(statuses=IN_FLIGHT))
            ),
            300,
            "waiting for the marts",
        )
        if built is None:
            print("the marts were still being built after 300 s", flush=True)
        runs = instance.get_runs()
        failed = [r.job_name for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
        monitor.stopping.set()
    roles = defaultdict(int)
    for proc in monitor.procs.values():
        roles[proc.role] += 1
    print("processes seen: " + ", ".join(f"{role} {n}" for role, n in roles.items()))

    with connect(latest=True) as con:
        ticks = con.execute(
            "select epoch(arrival_ts) as arrival, epoch(ingested_at) as lake,"
            " epoch(loaded_at) as marts, symbol = 'PROBE' as probe from stg_lake__ticks"
        ).fetchnumpy()
    ticks = {name: np.asarray(column) for name, column in ticks.items()}
    loaded = int((~ticks["probe"]).sum())
    print(
        f"{len(runs)} runs, {len(failed)} failed {failed}; stg_lake__ticks holds {loaded:,} ticks "
        f"from the producers, which counted {sent:,} (not the calls in flight as they stopped)"
    )
    progress = Progress(ticks)
    results = [(phase, figures(phase, progress, probes, instance)) for phase in phases]
    for phase, fig in results:
        print_phase(phase, fig, results[0][1], instance)

    print("which component saturates first, per rate:")
    kept = {}
    for phase, fig in results:
        kept[phase.rate], why = verdict(phase, fig)
        print(f"  {phase.rate:>6,}/s: {why}")
    if behind := [rate for rate in kept if not kept[rate]]:
        below = [rate for rate in kept if kept[rate] and rate < behind[0]]
        print(
            f"saturates above {below[-1]:,} ticks/s, by {behind[0]:,}"
            if below
            else f"saturates at {behind[0]:,} ticks/s already"
        )
    else:
        print(f"kept up with every rate tried, up to {max(kept):,} ticks/s")
    if TARGET_RATE in kept:
        print(
            f"target (keep up with {TARGET_RATE:,} ticks/s, bounded lag, freshness p95 <= "
            f"{TARGET_P95:.0f} s): {'met' if kept[TARGET_RATE] else 'NOT met'}"
        )
    if shared := [
        p.rate for p in phases if not_ours(p) / (p.stopped - p.started) >= SHARED_MACHINE
    ]:
        print(
            f"warning: processes not started here took {SHARED_MACHINE:.0%} of a core or more at "
            f"{', '.join(f'{rate:,}' for rate in shared)} ticks/s: figures under contention"
        )
    print("where a raw_ticks_job run spends its time (from its creation by the sensor):")
    print_percentiles(run_legs(instance))
    if loaded < sent:
        print("warning: the marts did not take in every tick put; the last rate's lag is low")
    if failed:
        raise SystemExit(f"FAILED: {len(failed)} runs failed")


if __name__ == "__main__":
    main()
