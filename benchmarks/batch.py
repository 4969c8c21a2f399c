"""Batch throughput and memory: ``generate_many`` beside a hand-written aiohttp loop, on the simulator.

The simulator runs in a **separate process** (a fresh one per measured run), started like
``python -m evolink_async.testing --port 0 --duration 0 --credits 1e9``: every task finishes at once
(``TaskPlan(duration=0)``, reported ``estimated_time`` 0). By default it is started through this script
(``--serve``: the same ``FakeEvolink`` with the same arguments as that command, plus a ``stats`` line on stdin
so request counts come from the server's side); ``--sim-cli`` starts the exact command instead (request
counts then come from the client). Client and simulator share the machine's cores (2 here, with other work
running): hence the alternation, the median, and the CPU-per-task columns, which are steadier than tasks/s.

Throughput (issue target 1): ``client.generate_many`` over ``--tasks`` prompts (5,000) at ``max_in_flight``
64, unpaced (``Limits(requests_per_second=None)``), against a raw-aiohttp loop of 64 workers doing the same
work (POST create with an Idempotency-Key, then GET until final), alternating baseline, sdk, baseline, sdk
... for ``--rounds`` rounds after an unmeasured warm-up. Reported: tasks/s, requests per task, client and
simulator CPU per task, latency from input pulled to outcome. Target: the sdk's median tasks/s is at least
90 % of the baseline's median.

The SDK runs with ``--poll`` (default ``min_interval=0.01,batch_interval=0.01``), the policy a user whose
tasks finish in well under a second would set (the defaults, 0.5 s, suit EvoLink's 45 s tasks). A task whose
``estimated_time`` is 0 is read at once after its create; later reads keep ``min_interval``, and batch reads are
grouped while one is under way. A probe (``--no-probe`` skips it) measures the first read with ``PollPolicy()``
and ``PollPolicy(min_interval=0.01)`` on a few tasks.

Memory (issue target 2): a lazy generator of N prompts through ``generate_many`` (``max_in_flight`` 64, same
``--poll``), each N in a fresh child process of this script with its own simulator process, reporting peak RSS
(``ru_maxrss``), VmRSS sampled during the run, the time taken and the simulator's own RSS. Target: flat —
peak RSS grows by at most ``--flat-mb`` (10 MB) from the smallest to the largest N, and by at most that much
within the largest run (from 10 % of the inputs done to the end). Quick mode runs 10k and 100k inputs;
``--memory-full`` runs 10k and 1M (about 8 minutes here; the simulator then holds about 2.3 GB of tasks);
``--inputs N`` (repeatable) picks the sizes.

    python benchmarks/batch.py                          # throughput, then memory at 10k and 100k
    python benchmarks/batch.py --only throughput --rounds 5
    python benchmarks/batch.py --only memory --memory-full
    python benchmarks/batch.py --only memory --inputs 10000 --inputs 300000

Exit status 0 when every target measured was met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import anyio

import evolink_async as evo
from evolink_async.testing import FakeEvolink, directive_plan

SIM_CLI = [sys.executable, "-m", "evolink_async.testing", "--port", "0", "--duration", "0", "--credits", "1e9"]
DEFAULT_POLL = "min_interval=0.01,batch_interval=0.01"
FINAL = ("completed", "failed", "cancelled")
MB = 1024 * 1024


# -- the simulator, in its own process ----------------------------------------------------------------------


async def _serve(duration: float, credits: float) -> None:
    """``--serve``: what ``python -m evolink_async.testing --duration D --credits C`` runs, plus stats on stdin."""
    fake = FakeEvolink(
        port=0, plan=functools.partial(directive_plan, default_duration=duration), initial_credits=credits
    )
    async with fake:
        print(f"EvoLink simulator running at {fake.base_url}", flush=True)
        print(f"API key: {fake.api_key}", flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:  # the benchmark closed our stdin (or died): stop
                return
            if line.strip() == "stats":
                s = fake.stats
                snapshot = {
                    "requests": s.requests,
                    "create_requests": s.create_requests,
                    "creates": s.creates,
                    "read_requests": s.read_requests,
                    "batch_requests": s.batch_requests,
                    "task_reads": sum(s.reads.values()),
                    "tasks": len(fake.tasks),
                }
                print(json.dumps(snapshot), flush=True)


def _proc_status(pid: int | str, field: str) -> int:
    """A ``kB`` field (VmRSS, VmHWM) of /proc/<pid>/status, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of another process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _self_cpu() -> float:
    t = os.times()
    return t.user + t.system


class Simulator:
    """The simulator process: ``url``, ``key``, server-side ``stats()`` (None with the plain CLI), CPU, RSS."""

    def __init__(self, use_cli: bool) -> None:
        cmd = SIM_CLI if use_cli else [sys.executable, os.path.abspath(__file__), "--serve"]
        self.use_cli = use_cli
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL if use_cli else subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        url = key = None
        while url is None or key is None:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the simulator exited before printing its URL and key: {cmd}")
            if m := re.search(r"running at (\S+)", line):
                url = m.group(1)
            if m := re.search(r"API key: (\S+)", line):
                key = m.group(1)
        self.url: str = url
        self.key: str = key

    def stats(self) -> dict[str, int] | None:
        if self.use_cli or self.proc.poll() is not None:
            return None
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line:
                return None
            if line.startswith("{"):
                return dict(json.loads(line))

    def cpu(self) -> float:
        return _proc_cpu(self.proc.pid)

    def rss(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) in bytes."""
        return _proc_status(self.proc.pid, "VmRSS"), _proc_status(self.proc.pid, "VmHWM")

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the two clients ------------------------------------------------------------------------------------------


def parse_poll(spec: str) -> evo.PollPolicy:
    """``"min_interval=0.01,batch=false"`` -> PollPolicy(min_interval=0.01, batch=False)."""
    kwargs: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, raw = part.partition("=")
        value: Any
        if raw.lower() in ("true", "false", "none"):
            value = {"true": True, "false": False, "none": None}[raw.lower()]
        else:
            value = float(raw) if "." in raw or "e" in raw.lower() else int(raw)
        kwargs[name.strip()] = value
    return evo.PollPolicy(**kwargs)


def prompts(n: int, pulled: list[float] | None = None) -> Iterator[str]:
    """A lazy generator of prompts; records when each was pulled if ``pulled`` is given."""
    for i in range(n):
        if pulled is not None:
            pulled.append(time.perf_counter())
        yield f"benchmark prompt {i}"


async def run_baseline(sim: Simulator, n: int, in_flight: int, connections: int) -> dict[str, Any]:
    """The hand-written loop: ``in_flight`` workers, each POST create then GET until final."""
    headers = {"Authorization": f"Bearer {sim.key}"}
    latencies: list[float] = []
    requests = 0
    failed = 0
    inputs = iter(range(n))
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(sim.url, headers=headers, connector=connector) as session:

        async def worker() -> None:
            nonlocal requests, failed
            for i in inputs:
                pulled = time.perf_counter()
                body = {"model": evo.DEFAULT_MODEL, "prompt": f"benchmark prompt {i}"}
                key = {"Idempotency-Key": f"evo-{uuid.uuid4().hex}"}
                async with session.post("/v1/images/generations", json=body, headers=key) as resp:
                    task_id = (await resp.json())["id"]
                requests += 1
                while True:
                    async with session.get(f"/v1/tasks/{task_id}") as resp:
                        status = (await resp.json())["status"]
                    requests += 1
                    if status in FINAL:
                        break
                failed += status != "completed"
                latencies.append(time.perf_counter() - pulled)

        cpu0, scpu0, t0 = _self_cpu(), sim.cpu(), time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(in_flight):
                tg.start_soon(worker)
        wall = time.perf_counter() - t0
        cpu, scpu = _self_cpu() - cpu0, sim.cpu() - scpu0
    return _row("baseline", n, wall, cpu, scpu, requests, latencies, failed, sim)


async def run_sdk(
    sim: Simulator, n: int, in_flight: int, connections: int, poll: evo.PollPolicy, name: str = "sdk"
) -> dict[str, Any]:
    limits = evo.Limits(max_in_flight=in_flight, requests_per_second=None, max_connections=connections)
    pulled: list[float] = []
    latencies: list[float] = []
    failed = 0
    async with evo.AsyncClient(sim.key, base_url=sim.url, poll=poll, limits=limits) as client:
        cpu0, scpu0, t0 = _self_cpu(), sim.cpu(), time.perf_counter()
        async with client.generate_many(prompts(n, pulled), max_in_flight=in_flight) as run:
            async for outcome in run:
                latencies.append(time.perf_counter() - pulled[outcome.index])
                failed += not outcome.ok
        wall = time.perf_counter() - t0
        cpu, scpu = _self_cpu() - cpu0, sim.cpu() - scpu0
        requests = client._http.requests_sent  # client-side count, used only when the server's is unknown
    return _row(name, n, wall, cpu, scpu, requests, latencies, failed, sim)


def _row(
    name: str,
    n: int,
    wall: float,
    cpu: float,
    server_cpu: float,
    client_requests: int,
    latencies: list[float],
    failed: int,
    sim: Simulator,
) -> dict[str, Any]:
    stats = sim.stats()
    latencies.sort()
    return {
        "run": name,
        "tasks": n,
        "wall_s": wall,
        "tasks_per_s": n / wall,
        "requests_per_task": (stats["requests"] if stats else client_requests) / n,
        "counted_by": "server" if stats else "client",
        "client_requests_per_task": client_requests / n,
        "create_requests": stats["create_requests"] if stats else None,
        "read_requests": stats["read_requests"] if stats else None,
        "batch_requests": stats["batch_requests"] if stats else None,
        "client_cpu_ms_per_task": 1000 * cpu / n,
        "client_busy": cpu / wall,
        "server_cpu_ms_per_task": 1000 * server_cpu / n,
        "latency_p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else float("nan"),
        "latency_p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan"),
        "latency_max_ms": 1000 * latencies[-1] if latencies else float("nan"),
        "failed": failed,
    }


# -- throughput ------------------------------------------------------------------------------------------------


def measure(args: argparse.Namespace, which: str, n: int, poll: evo.PollPolicy) -> dict[str, Any]:
    with Simulator(args.sim_cli) as sim:
        if which == "baseline":
            return anyio.run(run_baseline, sim, n, args.max_in_flight, args.connections)
        return anyio.run(run_sdk, sim, n, args.max_in_flight, args.connections, poll)


async def _probe(sim: Simulator, n: int, policies: dict[str, evo.PollPolicy]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    async def one(name: str, poll: evo.PollPolicy) -> None:
        rows.append(await run_sdk(sim, n, 64, 64, poll, name))

    async with anyio.create_task_group() as tg:
        for name, poll in policies.items():
            tg.start_soon(one, name, poll)
    return rows


def first_read_probe(args: argparse.Namespace) -> list[dict[str, Any]]:
    """How soon the poller first reads a task whose estimated_time is 0, with the default policy."""
    policies = {"PollPolicy()": evo.PollPolicy(), "PollPolicy(min_interval=0.01)": evo.PollPolicy(min_interval=0.01)}
    with Simulator(args.sim_cli) as sim:
        return anyio.run(_probe, sim, args.probe_tasks, policies)


def print_throughput(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'run':<19} {'tasks':>5} {'wall s':>7} {'tasks/s':>8} {'req/task':>8} {'creates':>7} {'GETs':>6} "
        f"{'batch':>5} {'cli CPU':>7} {'busy':>5} {'sim CPU':>7} {'lat p50':>8} {'lat p99':>8} {'fail':>4}"
    )
    print(header)
    print(f"{'':<19} {'':>5} {'':>7} {'':>8} {'':>8} {'':>7} {'':>6} {'':>5} {'ms/task':>7} {'':>5} {'ms/task':>7}")
    print("-" * len(header))

    def count(v: int | None) -> str:
        return "?" if v is None else str(v)

    for r in rows:
        print(
            f"{r['run']:<19} {r['tasks']:>5} {r['wall_s']:>7.2f} {r['tasks_per_s']:>8.0f} "
            f"{r['requests_per_task']:>8.3f} {count(r['create_requests']):>7} {count(r['read_requests']):>6} "
            f"{count(r['batch_requests']):>5} {r['client_cpu_ms_per_task']:>7.3f} {r['client_busy']:>5.0%} "
            f"{r['server_cpu_ms_per_task']:>7.3f} {r['latency_p50_ms']:>7.0f}ms {r['latency_p99_ms']:>7.0f}ms "
            f"{r['failed']:>4}"
        )


def throughput(args: argparse.Namespace) -> tuple[bool, list[dict[str, Any]]]:
    poll = parse_poll(args.poll)
    print(
        f"== throughput: {args.tasks} tasks finishing at once, max_in_flight {args.max_in_flight}, "
        f"{args.connections} connections, unpaced; simulator in its own process "
        f"({'CLI' if args.sim_cli else 'via --serve'}), fresh per run; sdk poll: {args.poll}",
        flush=True,
    )
    probes: list[dict[str, Any]] = []
    if not args.no_probe:
        print(f"probe: {args.probe_tasks} tasks with PollPolicy() and PollPolicy(min_interval=0.01) ...", flush=True)
        probes = first_read_probe(args)
    # Warm-up (imports, cattrs' generated hooks, the kernel's socket buffers): not reported.
    measure(args, "baseline", min(500, args.tasks), poll)
    measure(args, "sdk", min(500, args.tasks), poll)
    base: list[dict[str, Any]] = []
    sdk: list[dict[str, Any]] = []
    for i in range(args.rounds):
        for which, into in (("baseline", base), ("sdk", sdk)):
            row = measure(args, which, args.tasks, poll)
            row["run"] = f"{which} #{i + 1}"
            into.append(row)
            print(f"  {row['run']:<12} {row['tasks_per_s']:>6.0f} tasks/s", flush=True)
    rows = [r for pair in zip(base, sdk, strict=True) for r in pair]
    print()
    print_throughput(rows)
    print()
    b = [r["tasks_per_s"] for r in base]
    s = [r["tasks_per_s"] for r in sdk]
    per_round = [y / x for x, y in zip(b, s, strict=True)]
    ratio_median = statistics.median(s) / statistics.median(b)
    ratio_best = max(s) / max(b)
    print(
        f"baseline: median {statistics.median(b):.0f} tasks/s, best {max(b):.0f}; "
        f"{statistics.median(r['requests_per_task'] for r in base):.3f} requests/task "
        f"(counted by the {base[0]['counted_by']})"
    )
    print(
        f"sdk:      median {statistics.median(s):.0f} tasks/s, best {max(s):.0f}; "
        f"{statistics.median(r['requests_per_task'] for r in sdk):.3f} requests/task "
        f"(counted by the {sdk[0]['counted_by']})"
    )
    cpu_b = statistics.median(r["client_cpu_ms_per_task"] for r in base)
    cpu_s = statistics.median(r["client_cpu_ms_per_task"] for r in sdk)
    print(
        f"client CPU per task (median): sdk {cpu_s:.3f} ms, baseline {cpu_b:.3f} ms ({cpu_s / cpu_b:.2f}x); "
        f"the client's event loop is one core, so its CPU per task bounds tasks/s"
    )
    print(
        f"sdk/baseline: {ratio_median:.1%} of median, {ratio_best:.1%} of best "
        f"(per round: {', '.join(f'{x:.0%}' for x in per_round)})  target >= 90 %"
    )
    for r in probes:
        print(
            f"probe {r['run']}: {r['tasks']} tasks, outcome {r['latency_p50_ms'] / 1000:.2f} s (p50) / "
            f"{r['latency_max_ms'] / 1000:.2f} s (max) after the input was pulled, "
            f"{r['client_requests_per_task']:.2f} requests/task (client count)"
        )
    if probes and max(r["latency_p50_ms"] for r in probes) > 1000:
        print(
            "  -> with estimated_time 0 the first read is NOT prompt under these policies: 0 counts as no usable "
            "estimate, so it comes at first_check x default_estimate (15 s); min_interval alone cannot shorten it"
        )
    elif probes:
        print("  -> with estimated_time 0 the first read is prompt under these policies")
    failures = sum(r["failed"] for r in rows + probes)
    ok = ratio_median >= 0.9 and failures == 0
    if failures:
        print(f"{failures} tasks did not complete: the runs are not comparable")
    print("throughput target met" if ok else "THROUGHPUT TARGET MISSED")
    return ok, probes + rows


# -- memory ----------------------------------------------------------------------------------------------------


async def _memory_child(args: argparse.Namespace) -> dict[str, Any]:
    """``--memory-child N``: one lazy batch of N prompts; returns what it measured."""
    n = args.memory_child
    limits = evo.Limits(max_in_flight=args.max_in_flight, requests_per_second=None, max_connections=args.connections)
    samples: list[tuple[float, int, int]] = []  # (seconds, inputs done, VmRSS)
    done = 0
    async with evo.AsyncClient(args.key, base_url=args.url, poll=parse_poll(args.poll), limits=limits) as client:
        rss_start = _proc_status("self", "VmRSS")
        t0 = time.perf_counter()

        async def sample() -> None:
            while True:
                samples.append((time.perf_counter() - t0, done, _proc_status("self", "VmRSS")))
                await anyio.sleep(args.sample_every)

        failed = 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(sample)
            async with client.generate_many(prompts(n), max_in_flight=args.max_in_flight) as run:
                async for outcome in run:
                    done += 1
                    failed += not outcome.ok
            wall = time.perf_counter() - t0
            samples.append((wall, done, _proc_status("self", "VmRSS")))
            tg.cancel_scope.cancel()
        requests = client._http.requests_sent
    at_tenth = next((rss for _, d, rss in samples if d >= n // 10), samples[-1][2])
    return {
        "inputs": n,
        "done": done,
        "failed": failed,
        "wall_s": wall,
        "tasks_per_s": n / wall,
        "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_start": rss_start,
        "rss_at_10pct": at_tenth,
        "rss_end": samples[-1][2],
        "rss_max_sampled": max(rss for _, _, rss in samples),
        "samples": len(samples),
        "requests_per_task": requests / n,  # the client's count; the server's replaces it when known
    }


def memory_run(args: argparse.Namespace, n: int) -> dict[str, Any]:
    with Simulator(args.sim_cli) as sim:
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--memory-child",
            str(n),
            "--url",
            sim.url,
            "--key",
            sim.key,
            "--max-in-flight",
            str(args.max_in_flight),
            "--connections",
            str(args.connections),
            "--poll",
            args.poll,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        sim_alive = sim.alive
        sim_rss, sim_hwm = sim.rss() if sim_alive else (0, 0)
        stats = sim.stats() if sim_alive else None
    result_lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not result_lines:
        raise RuntimeError(f"memory child for {n} inputs failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    row = dict(json.loads(result_lines[-1][len("RESULT ") :]))
    row.update(sim_alive=sim_alive, sim_rss=sim_rss, sim_hwm=sim_hwm, sim_tasks=stats["tasks"] if stats else None)
    if stats:
        row["requests_per_task"] = stats["requests"] / n
    return row


def print_memory(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'inputs':>9} {'time s':>8} {'tasks/s':>7} {'peak RSS':>9} {'RSS start':>9} {'RSS @10%':>9} "
        f"{'RSS end':>9} {'max VmRSS':>9} {'req/task':>8} {'sim RSS':>9} {'sim peak':>9} {'fail':>4}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['inputs']:>9} {r['wall_s']:>8.1f} {r['tasks_per_s']:>7.0f} {r['ru_maxrss'] / MB:>7.1f}MB "
            f"{r['rss_start'] / MB:>7.1f}MB {r['rss_at_10pct'] / MB:>7.1f}MB {r['rss_end'] / MB:>7.1f}MB "
            f"{r['rss_max_sampled'] / MB:>7.1f}MB {r['requests_per_task']:>8.3f} "
            f"{r['sim_rss'] / MB:>7.0f}MB {r['sim_hwm'] / MB:>7.0f}MB {r['failed']:>4}"
        )


def memory(args: argparse.Namespace) -> tuple[bool, list[dict[str, Any]]]:
    sizes = sorted(set(args.inputs or ([10_000, 1_000_000] if args.memory_full else [10_000, 100_000])))
    print(
        f"== memory: lazy generator through generate_many, max_in_flight {args.max_in_flight}, poll {args.poll}; "
        f"each size in a fresh child process with its own simulator process; sizes {sizes}",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    for n in sizes:
        if rows:
            rate = rows[-1]["tasks_per_s"]
            estimate = n / rate
            note = "  (over 15 minutes: consider --inputs with a smaller N)" if estimate > 900 else ""
            print(f"  {n} inputs: about {estimate / 60:.1f} min at the last rate ({rate:.0f} tasks/s){note}")
        row = memory_run(args, n)
        rows.append(row)
        print(
            f"  {n} inputs: {row['wall_s']:.1f} s, peak RSS {row['ru_maxrss'] / MB:.1f} MB, "
            f"simulator {'alive' if row['sim_alive'] else 'DEAD'} at {row['sim_hwm'] / MB:.0f} MB peak",
            flush=True,
        )
    print()
    print_memory(rows)
    print()
    small, big = rows[0], rows[-1]
    ok = all(r["failed"] == 0 and r["done"] == r["inputs"] and r["sim_alive"] for r in rows)
    if len(rows) > 1:
        growth = big["ru_maxrss"] - small["ru_maxrss"]
        per_k = growth / ((big["inputs"] - small["inputs"]) / 1000)
        print(
            f"peak RSS growth {small['inputs']} -> {big['inputs']} inputs: {growth / MB:+.1f} MB "
            f"({per_k:+.0f} bytes per 1k inputs)  target: flat (<= {args.flat_mb:g} MB)"
        )
        ok = ok and growth <= args.flat_mb * MB
        if big["inputs"] < 1_000_000:
            rate = big["tasks_per_s"]
            sim_per_input = (big["sim_hwm"] - small["sim_hwm"]) / (big["inputs"] - small["inputs"])
            sim_1m = big["sim_hwm"] + sim_per_input * (1_000_000 - big["inputs"])
            print(
                f"EXTRAPOLATED, not measured: 1,000,000 inputs would take about {1_000_000 / rate / 60:.0f} min "
                f"at {rate:.0f} tasks/s and peak at about "
                f"{(big['ru_maxrss'] + per_k * (1_000_000 - big['inputs']) / 1000) / MB:.0f} MB (linear in the "
                f"growth above); the simulator would hold about {sim_1m / MB / 1024:.1f} GB"
            )
    drift = big["rss_end"] - big["rss_at_10pct"]
    print(
        f"within the {big['inputs']}-input run: VmRSS {big['rss_at_10pct'] / MB:.1f} MB at 10 % done -> "
        f"{big['rss_end'] / MB:.1f} MB at the end ({drift / MB:+.1f} MB, "
        f"{drift / (0.9 * big['inputs'] / 1000):+.0f} bytes per 1k inputs)  target: flat (<= {args.flat_mb:g} MB)"
    )
    ok = ok and drift <= args.flat_mb * MB
    for r in rows:
        if not r["sim_alive"]:
            print(f"the simulator process died during the {r['inputs']}-input run")
    print("memory target met" if ok else "MEMORY TARGET MISSED")
    return ok, rows


# -- main ------------------------------------------------------------------------------------------------------


def main(args: argparse.Namespace) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress lines when piped
    if args.serve:
        asyncio.run(_serve(0.0, 1e9))
        return 0
    if args.memory_child:
        result = anyio.run(_memory_child, args)
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    results: dict[str, Any] = {}
    ok = True
    if args.only in (None, "throughput"):
        met, results["throughput"] = throughput(args)
        ok = ok and met
        print()
    if args.only in (None, "memory"):
        met, results["memory"] = memory(args)
        ok = ok and met
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("throughput", "memory"), help="run one part only")
    parser.add_argument("--tasks", type=int, default=5000, help="tasks per throughput run (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=5, help="baseline+sdk pairs, alternating (default %(default)s)")
    parser.add_argument("--max-in-flight", type=int, default=64, help="for both clients (default %(default)s)")
    parser.add_argument("--connections", type=int, default=64, help="connection pool of both (default %(default)s)")
    parser.add_argument("--poll", default=DEFAULT_POLL, help="the sdk's PollPolicy, k=v,... (default %(default)s)")
    parser.add_argument("--no-probe", action="store_true", help="skip the default-PollPolicy first-read probe")
    parser.add_argument("--probe-tasks", type=int, default=8, help="tasks per probe policy (default %(default)s)")
    parser.add_argument("--inputs", type=int, action="append", help="memory: a size N (repeatable)")
    parser.add_argument("--memory-full", action="store_true", help="memory at 10k and 1M instead of 10k and 100k")
    parser.add_argument("--flat-mb", type=float, default=10.0, help="memory: allowed RSS growth (default %(default)s)")
    parser.add_argument("--sample-every", type=float, default=0.25, help="memory: VmRSS sampling period (s)")
    parser.add_argument("--sim-cli", action="store_true", help="start `python -m evolink_async.testing` itself")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    sys.exit(main(parser.parse_args()))
