"""The simulator in its own process, shared by the benchmarks (``batch.py``, ``scale.py``).

``Simulator(...)`` starts ``python benchmarks/_sim.py`` (this file): a ``FakeEvolink`` on a free loopback port,
the same one ``python -m evolink_async.testing --port 0`` runs, that also answers a ``stats`` line on its stdin
with the server's counters as JSON, so request counts come from the server's side. Tasks last ``duration``
seconds (or uniformly between ``duration`` and ``duration_max``) and report ``estimated_time`` ``eta`` (default:
the duration rounded up); prompt directives (``[duration:0.2] [eta:1]``) still override both, per task.
``Simulator(use_cli=True)`` starts the exact ``python -m evolink_async.testing`` command instead (no stats).

Also: CPU and RSS of a process from /proc (Linux).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
from typing import Any

import attrs

from evolink_async.testing import FakeEvolink, TaskPlan, directive_plan

__all__ = ("Simulator", "proc_cpu", "proc_status", "self_cpu")


def proc_status(pid: int | str, field: str) -> int:
    """A ``kB`` field (VmRSS, VmHWM) of /proc/<pid>/status, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of another process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu() -> float:
    """User + system CPU seconds of this process."""
    t = os.times()
    return t.user + t.system


# -- the server side (this file run as a script) -------------------------------------------------------------


def make_plan(duration: float, duration_max: float | None, eta: int | None, seed: int) -> Any:
    """Prompt directives first; otherwise a duration uniform in [duration, duration_max] and ``eta``."""
    rng = random.Random(seed)

    def plan(body: dict[str, Any]) -> TaskPlan:
        default = duration if duration_max is None else rng.uniform(duration, duration_max)
        planned = directive_plan(body, default_duration=default)
        if eta is not None and "[eta:" not in str(body.get("prompt", "")):
            planned = attrs.evolve(planned, estimated_time=eta)
        return planned

    return plan


async def serve(args: argparse.Namespace) -> None:
    fake = FakeEvolink(
        port=0, plan=make_plan(args.duration, args.duration_max, args.eta, args.seed), initial_credits=args.credits
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
                    "running": s.running,
                    "tasks": len(fake.tasks),
                }
                print(json.dumps(snapshot), flush=True)


# -- the benchmark side --------------------------------------------------------------------------------------


class Simulator:
    """The simulator process: ``url``, ``key``, server-side ``stats()`` (None with the plain CLI), CPU, RSS."""

    def __init__(
        self,
        use_cli: bool = False,
        *,
        duration: float = 0.0,
        duration_max: float | None = None,
        eta: int | None = None,
        credits: float = 1e9,
        seed: int = 1,
    ) -> None:
        if use_cli:
            if duration_max is not None or eta is not None:
                raise ValueError("the plain simulator CLI has fixed durations and no eta option")
            cmd = [sys.executable, "-m", "evolink_async.testing", "--port", "0"]
            cmd += ["--duration", str(duration), "--credits", str(credits)]
        else:
            cmd = [sys.executable, os.path.abspath(__file__), "--duration", str(duration), "--credits", str(credits)]
            cmd += ["--seed", str(seed)]
            if duration_max is not None:
                cmd += ["--duration-max", str(duration_max)]
            if eta is not None:
                cmd += ["--eta", str(eta)]
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
        """The server's counters (None with the plain CLI, or once the process is gone). Blocks briefly."""
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
        return proc_cpu(self.proc.pid)

    def rss(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) in bytes."""
        return proc_status(self.proc.pid, "VmRSS"), proc_status(self.proc.pid, "VmHWM")

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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=0.0, help="task duration, or its minimum (s)")
    parser.add_argument("--duration-max", type=float, help="durations uniform in [duration, duration-max]")
    parser.add_argument("--eta", type=int, help="reported estimated_time (default: the duration rounded up)")
    parser.add_argument("--credits", type=float, default=1e9)
    parser.add_argument("--seed", type=int, default=1)
    asyncio.run(serve(parser.parse_args()))
