"""Batch throughput and memory: ``generate_many`` beside a raw aiohttp loop and openai-python, on the simulator.

The simulator runs in a **separate process** (a fresh one per measured run; ``benchmarks/_sim.py``): the same
``FakeEvolink`` that ``python -m evolink_async.testing --port 0 --duration 0 --credits 1e9`` runs, plus a
``stats`` line on stdin so request counts come from the server's side. Every task finishes at once
(``TaskPlan(duration=0)``, reported ``estimated_time`` 0). ``--sim-cli`` starts that exact command instead
(request counts of the SDK are then unknown: "?"). Client and simulator share the machine's cores (2 here,
with other work running): hence the alternation, the medians, and the CPU-per-task columns, which are steadier
than tasks/s.

Throughput (issue 7, part 3): ``--tasks`` inputs (5,000) at 64 in flight, unpaced, 64 connections, through
four clients, alternating loop, sdk per-task, sdk batch, openai, loop, ... for ``--rounds`` rounds (5) after
an unmeasured warm-up of each:

- ``loop``: the baseline, a raw aiohttp loop of 64 workers, each POST create (with an Idempotency-Key), then
  GET at once until final;
- ``sdk per-task``: ``client.generate_many(..., max_in_flight=64)`` with ``PollPolicy(batch=False, <--poll>)``
  and ``Limits(max_in_flight=64, requests_per_second=None, max_connections=64)``;
- ``sdk batch``: the same with ``PollPolicy(batch=True, <--poll>)`` (reads of many tasks per request);
- ``openai``: openai-python's generic client, ``openai.AsyncOpenAI(base_url=<sim>/v1, api_key=...)``, its
  documented low-level ``await client.post("/images/generations", body=..., cast_to=httpx.Response,
  options={"headers": {"Idempotency-Key": ...}})`` then ``client.get(f"/tasks/{id}", cast_to=httpx.Response)``
  until final, 64 workers, default options otherwise; ``--openai-tasks`` (1,000) per round, as it is slower.
  Needs the ``bench`` dependency group (``make bench``, or ``uv sync --group bench``); ``--no-openai`` skips it.

``--poll`` (default ``min_interval=0.01,batch_interval=0.01``) is the policy a user whose tasks finish in well
under a second would set (the defaults, 0.5 s, suit EvoLink's 45 s tasks). A probe (``--no-probe`` skips it)
checks that the first read of a task whose ``estimated_time`` is 0 comes at once with ``PollPolicy()`` too.

Reported per run: tasks/s, requests per task (server's count), client and simulator CPU per task, latency from
input pulled to outcome. Ratios of medians, with targets: sdk per-task >= 0.8x the loop's tasks/s and <= 1.3x
its client CPU per task; sdk batch >= 1.0x the loop's tasks/s; sdk per-task >= 5x openai's tasks/s (the like
for like: openai also reads each task on its own; the batch mode's ratio is printed too).

Memory: a lazy generator of N prompts through ``generate_many`` (``max_in_flight`` 64, ``--poll``, batch reads
detected), each N in a fresh child process of this script with its own simulator process, reporting peak RSS
(the child's ``VmHWM``; not ``ru_maxrss``, which Linux carries over from the parent at fork and exec, and the
parent has imported openai), VmRSS sampled during the run, the time taken and the simulator's own RSS. Target:
flat — peak RSS grows by at most ``--flat-mb`` (10 MB) from the smallest to the largest N, and by at most that
much within the largest run (from 10 % of the inputs done to the end). By default 10k and 100k inputs; ``--memory-full``
runs 10k and 1M (about 8 minutes here; the simulator then holds about 2.3 GB of tasks); ``--inputs N``
(repeatable) picks the sizes.

``--quick``: a smoke test (about 15 s): one round of 500 tasks (openai 200), no probe, memory at 2k and 5k
inputs; it prints the same figures and exits 0 whatever they are, unless ``--targets`` is given too.

    python benchmarks/batch.py                          # throughput, then memory at 10k and 100k (~2.5 min)
    python benchmarks/batch.py --only throughput --rounds 5
    python benchmarks/batch.py --only memory --memory-full
    python benchmarks/batch.py --only memory --inputs 10000 --inputs 300000
    python benchmarks/batch.py --quick

Exit status 0 when every target measured was met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import anyio
from _sim import Simulator, proc_status, self_cpu

import evolink_async as evo

DEFAULT_POLL = "min_interval=0.01,batch_interval=0.01"
FINAL = ("completed", "failed", "cancelled")
MB = 1024 * 1024
CLIENTS = ("loop", "sdk per-task", "sdk batch", "openai")
PER_TASK_TPS_TARGET = 0.8
PER_TASK_CPU_TARGET = 1.3
BATCH_TPS_TARGET = 1.0
OPENAI_TARGET = 5.0


# -- the clients ---------------------------------------------------------------------------------------------


def parse_poll(spec: str, **overrides: Any) -> evo.PollPolicy:
    """``"min_interval=0.01,batch=false"`` -> PollPolicy(min_interval=0.01, batch=False); ``overrides`` win."""
    kwargs: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, raw = part.partition("=")
        value: Any
        if raw.lower() in ("true", "false", "none"):
            value = {"true": True, "false": False, "none": None}[raw.lower()]
        else:
            value = float(raw) if "." in raw or "e" in raw.lower() else int(raw)
        kwargs[name.strip()] = value
    kwargs.update(overrides)
    return evo.PollPolicy(**kwargs)


def prompts(n: int, pulled: list[float] | None = None) -> Iterator[str]:
    """A lazy generator of prompts; records when each was pulled if ``pulled`` is given."""
    for i in range(n):
        if pulled is not None:
            pulled.append(time.perf_counter())
        yield f"benchmark prompt {i}"


async def run_loop(sim: Simulator, n: int, in_flight: int, connections: int) -> dict[str, Any]:
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

        cpu0, scpu0, t0 = self_cpu(), sim.cpu(), time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(in_flight):
                tg.start_soon(worker)
        wall = time.perf_counter() - t0
        cpu, scpu = self_cpu() - cpu0, sim.cpu() - scpu0
    return _row("loop", n, wall, cpu, scpu, requests, latencies, failed, sim)


def openai_available() -> bool:
    return importlib.util.find_spec("openai") is not None


async def run_openai(sim: Simulator, n: int, in_flight: int, connections: int) -> dict[str, Any]:
    """openai-python's generic client (``AsyncOpenAI.post`` / ``.get``), ``in_flight`` workers like the loop."""
    import openai

    try:  # openai >= 3 is built on httpx2; earlier versions on httpx
        from httpx2 import Response
    except ImportError:
        from httpx import Response  # type: ignore[assignment]

    latencies: list[float] = []
    requests = 0
    failed = 0
    inputs = iter(range(n))
    async with openai.AsyncOpenAI(api_key=sim.key, base_url=sim.url + "/v1") as client:

        async def worker() -> None:
            nonlocal requests, failed
            for i in inputs:
                pulled = time.perf_counter()
                body = {"model": evo.DEFAULT_MODEL, "prompt": f"benchmark prompt {i}"}
                key = {"Idempotency-Key": f"evo-{uuid.uuid4().hex}"}
                resp = await client.post("/images/generations", body=body, cast_to=Response, options={"headers": key})
                task_id = resp.json()["id"]
                requests += 1
                while True:
                    resp = await client.get(f"/tasks/{task_id}", cast_to=Response)
                    status = resp.json()["status"]
                    requests += 1
                    if status in FINAL:
                        break
                failed += status != "completed"
                latencies.append(time.perf_counter() - pulled)

        cpu0, scpu0, t0 = self_cpu(), sim.cpu(), time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(in_flight):
                tg.start_soon(worker)
        wall = time.perf_counter() - t0
        cpu, scpu = self_cpu() - cpu0, sim.cpu() - scpu0
    return _row("openai", n, wall, cpu, scpu, requests, latencies, failed, sim)


async def run_sdk(
    sim: Simulator, n: int, in_flight: int, connections: int, poll: evo.PollPolicy, name: str = "sdk"
) -> dict[str, Any]:
    limits = evo.Limits(max_in_flight=in_flight, requests_per_second=None, max_connections=connections)
    pulled: list[float] = []
    latencies: list[float] = []
    failed = 0
    async with evo.AsyncClient(sim.key, base_url=sim.url, poll=poll, limits=limits) as client:
        cpu0, scpu0, t0 = self_cpu(), sim.cpu(), time.perf_counter()
        async with client.generate_many(prompts(n, pulled), max_in_flight=in_flight) as run:
            async for outcome in run:
                latencies.append(time.perf_counter() - pulled[outcome.index])
                failed += not outcome.ok
        wall = time.perf_counter() - t0
        cpu, scpu = self_cpu() - cpu0, sim.cpu() - scpu0
    # The SDK's requests are counted by the server only (None with --sim-cli).
    return _row(name, n, wall, cpu, scpu, None, latencies, failed, sim)


def _row(
    name: str,
    n: int,
    wall: float,
    cpu: float,
    server_cpu: float,
    client_requests: int | None,
    latencies: list[float],
    failed: int,
    sim: Simulator,
) -> dict[str, Any]:
    stats = sim.stats()
    latencies.sort()
    requests = stats["requests"] if stats else client_requests
    return {
        "run": name,
        "tasks": n,
        "wall_s": wall,
        "tasks_per_s": n / wall,
        "requests_per_task": requests / n if requests is not None else None,
        "counted_by": "server" if stats else ("client" if client_requests is not None else "nobody"),
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


def measure(args: argparse.Namespace, which: str, n: int) -> dict[str, Any]:
    """One run of one client on a fresh simulator process."""
    with Simulator(args.sim_cli) as sim:
        if which == "loop":
            return anyio.run(run_loop, sim, n, args.max_in_flight, args.connections)
        if which == "openai":
            return anyio.run(run_openai, sim, n, args.max_in_flight, args.connections)
        poll = parse_poll(args.poll, batch=which == "sdk batch")
        return anyio.run(run_sdk, sim, n, args.max_in_flight, args.connections, poll, which)


def first_read_probe(args: argparse.Namespace) -> list[dict[str, Any]]:
    """How soon the poller first reads a task whose estimated_time is 0, with the default policy."""
    policies = {"PollPolicy()": evo.PollPolicy(), "PollPolicy(min_interval=0.01)": evo.PollPolicy(min_interval=0.01)}
    rows = []
    for name, poll in policies.items():
        with Simulator(args.sim_cli) as sim:
            rows.append(anyio.run(run_sdk, sim, args.probe_tasks, 64, 64, poll, name))
    return rows


def _count(v: int | float | None, fmt: str = "") -> str:
    return "?" if v is None else format(v, fmt)


def print_throughput(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'run':<19} {'tasks':>5} {'wall s':>7} {'tasks/s':>8} {'req/task':>8} {'creates':>7} {'GETs':>6} "
        f"{'batch':>5} {'cli CPU':>7} {'busy':>5} {'sim CPU':>7} {'lat p50':>8} {'lat p99':>8} {'fail':>4}"
    )
    print(header)
    print(f"{'':<19} {'':>5} {'':>7} {'':>8} {'':>8} {'':>7} {'':>6} {'':>5} {'ms/task':>7} {'':>5} {'ms/task':>7}")
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['run']:<19} {r['tasks']:>5} {r['wall_s']:>7.2f} {r['tasks_per_s']:>8.0f} "
            f"{_count(r['requests_per_task'], '.3f'):>8} {_count(r['create_requests']):>7} "
            f"{_count(r['read_requests']):>6} {_count(r['batch_requests']):>5} "
            f"{r['client_cpu_ms_per_task']:>7.3f} {r['client_busy']:>5.0%} "
            f"{r['server_cpu_ms_per_task']:>7.3f} {r['latency_p50_ms']:>7.0f}ms {r['latency_p99_ms']:>7.0f}ms "
            f"{r['failed']:>4}"
        )


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def throughput(args: argparse.Namespace) -> tuple[bool, list[dict[str, Any]]]:
    clients = [c for c in CLIENTS if c != "openai" or not args.no_openai]
    print(
        f"== throughput: {args.tasks} tasks finishing at once (openai: {args.openai_tasks}), max_in_flight "
        f"{args.max_in_flight}, {args.connections} connections, unpaced; simulator in its own process "
        f"({'CLI' if args.sim_cli else 'benchmarks/_sim.py'}), fresh per run; sdk poll: {args.poll}; "
        f"{args.rounds} rounds of {', '.join(clients)}",
        flush=True,
    )
    probes: list[dict[str, Any]] = []
    if not args.no_probe:
        print(f"probe: {args.probe_tasks} tasks with PollPolicy() and PollPolicy(min_interval=0.01) ...", flush=True)
        probes = first_read_probe(args)
    sizes = {c: args.openai_tasks if c == "openai" else args.tasks for c in clients}
    # Warm-up (imports, cattrs' generated hooks, the kernel's socket buffers): not reported.
    for c in clients:
        measure(args, c, min(sizes[c], 300))
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in clients}
    for i in range(args.rounds):
        line = []
        for c in clients:
            row = measure(args, c, sizes[c])
            row["run"] = f"{c} #{i + 1}"
            runs[c].append(row)
            line.append(f"{c} {row['tasks_per_s']:.0f}")
        print(f"  round {i + 1}: " + ", ".join(line) + " tasks/s", flush=True)
    rows = [runs[c][i] for i in range(args.rounds) for c in clients]
    print()
    print_throughput(rows)
    print()
    tps = {c: _median(runs[c], "tasks_per_s") for c in clients}
    cpu = {c: _median(runs[c], "client_cpu_ms_per_task") for c in clients}
    for c in clients:
        req = [r["requests_per_task"] for r in runs[c] if r["requests_per_task"] is not None]
        per_round = ", ".join(format(r["tasks_per_s"], ".0f") for r in runs[c])
        req_text = f"{statistics.median(req):.3f} requests/task" if req else "requests/task unknown"
        print(
            f"{c:<13} median {tps[c]:>6.0f} tasks/s (per round: {per_round}), client CPU {cpu[c]:.3f} ms/task, "
            f"{req_text}"
        )
    print()
    loop = tps["loop"]
    checks = [
        (
            tps["sdk per-task"] / loop >= PER_TASK_TPS_TARGET,
            f"sdk per-task / loop tasks/s: {tps['sdk per-task'] / loop:.2f}x  (target >= {PER_TASK_TPS_TARGET}x; "
            f"per round: {_per_round(runs['sdk per-task'], runs['loop'])})",
        ),
        (
            cpu["sdk per-task"] / cpu["loop"] <= PER_TASK_CPU_TARGET,
            f"sdk per-task / loop client CPU per task: {cpu['sdk per-task'] / cpu['loop']:.2f}x  "
            f"(target <= {PER_TASK_CPU_TARGET}x; {cpu['sdk per-task'] * 1000:.0f} vs {cpu['loop'] * 1000:.0f} µs)",
        ),
        (
            tps["sdk batch"] / loop >= BATCH_TPS_TARGET,
            f"sdk batch / loop tasks/s: {tps['sdk batch'] / loop:.2f}x  (target >= {BATCH_TPS_TARGET}x; "
            f"per round: {_per_round(runs['sdk batch'], runs['loop'])}; client CPU "
            f"{cpu['sdk batch'] / cpu['loop']:.2f}x)",
        ),
    ]
    if "openai" in tps:
        checks.append(
            (
                tps["sdk per-task"] / tps["openai"] >= OPENAI_TARGET,
                f"sdk per-task / openai tasks/s: {tps['sdk per-task'] / tps['openai']:.1f}x  (target >= "
                f"{OPENAI_TARGET:g}x; sdk batch / openai: {tps['sdk batch'] / tps['openai']:.1f}x; loop / openai: "
                f"{loop / tps['openai']:.1f}x; openai client CPU {cpu['openai'] / cpu['loop']:.1f}x the loop's)",
            )
        )
    else:
        checks.append((False, "sdk / openai tasks/s: NOT MEASURED (--no-openai, or openai not installed)"))
    for ok, text in checks:
        print(f"  {'ok  ' if ok else 'MISS'} {text}")
    for r in probes:
        print(
            f"probe {r['run']}: {r['tasks']} tasks, outcome {r['latency_p50_ms'] / 1000:.2f} s (p50) / "
            f"{r['latency_max_ms'] / 1000:.2f} s (max) after the input was pulled, "
            f"{_count(r['requests_per_task'], '.2f')} requests/task"
        )
    if probes and max(r["latency_p50_ms"] for r in probes) > 1000:
        print(
            "  -> with estimated_time 0 the first read is NOT prompt under these policies: 0 counts as no usable "
            "estimate, so it comes at first_check x default_estimate (15 s); min_interval alone cannot shorten it"
        )
    elif probes:
        print("  -> with estimated_time 0 the first read is prompt under these policies")
    failures = sum(r["failed"] for r in rows + probes)
    if failures:
        print(f"{failures} tasks did not complete: the runs are not comparable")
    ok = all(ok for ok, _ in checks) and failures == 0
    print("throughput targets met" if ok else "THROUGHPUT TARGETS MISSED")
    return ok, probes + rows


def _per_round(sdk: list[dict[str, Any]], loop: list[dict[str, Any]]) -> str:
    return ", ".join(f"{s['tasks_per_s'] / b['tasks_per_s']:.2f}" for s, b in zip(sdk, loop, strict=True))


# -- memory ----------------------------------------------------------------------------------------------------


async def _memory_child(args: argparse.Namespace) -> dict[str, Any]:
    """``--memory-child N``: one lazy batch of N prompts; returns what it measured."""
    n = args.memory_child
    limits = evo.Limits(max_in_flight=args.max_in_flight, requests_per_second=None, max_connections=args.connections)
    samples: list[tuple[float, int, int]] = []  # (seconds, inputs done, VmRSS)
    done = 0
    async with evo.AsyncClient(args.key, base_url=args.url, poll=parse_poll(args.poll), limits=limits) as client:
        rss_start = proc_status("self", "VmRSS")
        t0 = time.perf_counter()

        async def sample() -> None:
            while True:
                samples.append((time.perf_counter() - t0, done, proc_status("self", "VmRSS")))
                await anyio.sleep(args.sample_every)

        failed = 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(sample)
            async with client.generate_many(prompts(n), max_in_flight=args.max_in_flight) as run:
                async for outcome in run:
                    done += 1
                    failed += not outcome.ok
            wall = time.perf_counter() - t0
            samples.append((wall, done, proc_status("self", "VmRSS")))
            tg.cancel_scope.cancel()
    at_tenth = next((rss for _, d, rss in samples if d >= n // 10), samples[-1][2])
    return {
        "inputs": n,
        "done": done,
        "failed": failed,
        "wall_s": wall,
        "tasks_per_s": n / wall,
        "peak_rss": proc_status("self", "VmHWM"),
        "rss_start": rss_start,
        "rss_at_10pct": at_tenth,
        "rss_end": samples[-1][2],
        "rss_max_sampled": max(rss for _, _, rss in samples),
        "samples": len(samples),
        "requests_per_task": None,  # counted by the server (see memory_run); unknown with --sim-cli
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
            f"{r['inputs']:>9} {r['wall_s']:>8.1f} {r['tasks_per_s']:>7.0f} {r['peak_rss'] / MB:>7.1f}MB "
            f"{r['rss_start'] / MB:>7.1f}MB {r['rss_at_10pct'] / MB:>7.1f}MB {r['rss_end'] / MB:>7.1f}MB "
            f"{r['rss_max_sampled'] / MB:>7.1f}MB {_count(r['requests_per_task'], '.3f'):>8} "
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
            f"  {n} inputs: {row['wall_s']:.1f} s, peak RSS {row['peak_rss'] / MB:.1f} MB, "
            f"simulator {'alive' if row['sim_alive'] else 'DEAD'} at {row['sim_hwm'] / MB:.0f} MB peak",
            flush=True,
        )
    print()
    print_memory(rows)
    print()
    small, big = rows[0], rows[-1]
    ok = all(r["failed"] == 0 and r["done"] == r["inputs"] and r["sim_alive"] for r in rows)
    if len(rows) > 1:
        growth = big["peak_rss"] - small["peak_rss"]
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
                f"{(big['peak_rss'] + per_k * (1_000_000 - big['inputs']) / 1000) / MB:.0f} MB (linear in the "
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
    if args.memory_child:
        result = anyio.run(_memory_child, args)
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    if args.quick:
        args.rounds, args.tasks, args.openai_tasks, args.no_probe = 1, 500, 200, True
        args.inputs = args.inputs or [2_000, 5_000]
    if not args.no_openai and not openai_available():
        if not args.quick and args.only in (None, "throughput"):
            print("openai is not installed: make bench installs it, or pass --no-openai", file=sys.stderr)
            return 2
        print("openai is not installed: the openai client is skipped")
        args.no_openai = True
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
    if args.quick and not args.targets:
        print("quick slice: figures only, targets not applied")
        return 0
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("throughput", "memory"), help="run one part only")
    parser.add_argument("--tasks", type=int, default=5000, help="tasks per throughput run (default %(default)s)")
    parser.add_argument("--openai-tasks", type=int, default=1000, help="tasks per openai run (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, alternating (default %(default)s)")
    parser.add_argument("--max-in-flight", type=int, default=64, help="for every client (default %(default)s)")
    parser.add_argument("--connections", type=int, default=64, help="connection pool (default %(default)s)")
    parser.add_argument("--poll", default=DEFAULT_POLL, help="the sdk's PollPolicy, k=v,... (default %(default)s)")
    parser.add_argument("--no-openai", action="store_true", help="skip openai-python (its target is then missed)")
    parser.add_argument("--no-probe", action="store_true", help="skip the default-PollPolicy first-read probe")
    parser.add_argument("--probe-tasks", type=int, default=8, help="tasks per probe policy (default %(default)s)")
    parser.add_argument("--inputs", type=int, action="append", help="memory: a size N (repeatable)")
    parser.add_argument("--memory-full", action="store_true", help="memory at 10k and 1M instead of 10k and 100k")
    parser.add_argument("--flat-mb", type=float, default=10.0, help="memory: allowed RSS growth (default %(default)s)")
    parser.add_argument("--sample-every", type=float, default=0.25, help="memory: VmRSS sampling period (s)")
    parser.add_argument("--sim-cli", action="store_true", help="start `python -m evolink_async.testing` itself")
    parser.add_argument("--quick", action="store_true", help="a tiny slice (~15 s); exits 0 unless --targets")
    parser.add_argument("--targets", action="store_true", help="with --quick: apply the targets anyway")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    sys.exit(main(parser.parse_args()))
