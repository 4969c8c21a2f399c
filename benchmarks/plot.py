"""Draw the benchmarks' results (the JSON that ``make bench`` writes) as the plots docs/benchmarks.md shows.

    python benchmarks/plot.py benchmarks/results docs/img

- ``polling.png``: status reads per task against median detection lag (as a share of the task's duration), for
  the SDK's poller and for fixed-interval pollers (EvoLink's own client polls every 3 s), per-task mode.
- ``throughput.png``: tasks/s and client CPU per task for every contender of ``batch.py`` (median of the rounds,
  with their spread).

Needs matplotlib (the ``bench`` extra).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_polling(rows: list[dict[str, Any]], out: Path) -> None:
    per_task = [r for r in rows if r["tasks"] == min(x["tasks"] for x in rows)]
    fixed = sorted((r for r in per_task if r["scenario"].startswith("fixed")), key=lambda r: r["reads_per_task"])
    sdk = [r for r in per_task if r["scenario"].startswith("sdk")]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(
        [r["median_lag_ratio"] * 100 for r in fixed],
        [r["reads_per_task"] for r in fixed],
        "o-",
        color="grey",
        label="fixed-interval poller",
    )
    for r in fixed:
        ax.annotate(
            r["scenario"].removeprefix("fixed "),
            (r["median_lag_ratio"] * 100, r["reads_per_task"]),
            textcoords="offset points",
            xytext=(6, 4),
            fontsize=8,
            color="grey",
        )
    for r in sdk:
        ax.plot(
            r["median_lag_ratio"] * 100,
            r["reads_per_task"],
            "D",
            color="tab:blue",
            markersize=9,
            label=f"evolink-async ({r['scenario'].removeprefix('sdk ')})",
        )
    ax.set_xlabel("median detection lag (% of the task's duration)")
    ax.set_ylabel("status reads per task")
    ax.set_title("Polling: cost against lag (lower left is better)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "polling.png", dpi=110)
    plt.close(fig)


CONTENDERS = ("loop", "sdk per-task", "sdk batch", "openai")


def plot_throughput(rows: list[dict[str, Any]], out: Path) -> None:
    by_client: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        name = str(row.get("run", "")).split(" #")[0]
        if name in CONTENDERS:  # the first-read probes are rows too, of another kind
            by_client.setdefault(name, []).append(row)
    names = list(by_client)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, key, label, scale in (
        (left, "tasks_per_s", "tasks/s (higher is better)", 1.0),
        (right, "client_cpu_ms_per_task", "client CPU µs per task (lower is better)", 1000.0),
    ):
        values = [[r[key] * scale for r in by_client[n]] for n in names]
        medians = [statistics.median(v) for v in values]
        spread = [
            [m - min(v) for m, v in zip(medians, values, strict=True)],
            [max(v) - m for m, v in zip(medians, values, strict=True)],
        ]
        colors = ["tab:blue" if n.startswith("sdk") else "grey" for n in names]
        ax.bar(names, medians, yerr=spread, color=colors, capsize=4)
        ax.set_title(label, fontsize=10)
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("5,000 tasks finishing at once: each contender, median of the rounds (bars: min-max)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=110)
    plt.close(fig)


def main(results: Path, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    drawn = 0
    if (results / "polling.json").exists():
        plot_polling(json.loads((results / "polling.json").read_text()), out)
        drawn += 1
    if (results / "batch.json").exists():
        throughput = json.loads((results / "batch.json").read_text()).get("throughput")
        if throughput:
            plot_throughput(throughput, out)
            drawn += 1
    print(f"{drawn} plots drawn into {out}")
    return 0 if drawn else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
