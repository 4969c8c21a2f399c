"""A batch on Ray Data: a JSON-lines file of inputs in, outcomes (Parquet) and pictures out.

On a laptop, against the simulator (in another terminal: ``python -m evolink_async.testing --port 8080``)::

    EVOLINK_API_KEY=sk-evo-simulator-key EVOLINK_BASE_URL=http://127.0.0.1:8080 \\
        python examples/ray_batch.py prompts.jsonl --job posters-1 --out out

On a cluster, the same script with ``--address auto`` (or submitted with ``ray job submit``), the real key in the
workers' environment, and ``--out s3://bucket/posters`` (any pyarrow file system URI). Each line of the file is
``{"custom_id": "...", "prompt": "..."}`` (``custom_id`` optional, recommended: it makes a rerun exactly-once).
"""

from __future__ import annotations

import argparse
import os

import ray

import evolink_async as evo
from evolink_async.ray import default_compute, generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", help="a JSON-lines file: one object per line with a 'prompt' (and 'custom_id')")
    parser.add_argument("--job", required=True, help="the job's name: the same for a rerun (nothing is paid twice)")
    parser.add_argument("--out", required=True, help="a directory or URI: outcomes/ (Parquet) and files/")
    parser.add_argument("--address", default=None, help="a Ray cluster to join ('auto'); default: a local one")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--rate", type=float, default=20.0, help="requests/s for the whole account")
    args = parser.parse_args()

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if args.address:
        ray.init(address=args.address)
    else:
        ray.init(num_cpus=2, include_dashboard=False)  # a laptop: a local cluster of 2 CPUs
    out = args.out.rstrip("/")
    inputs = ray.data.read_json(os.path.abspath(args.inputs) if "://" not in args.inputs else args.inputs)
    outcomes = generate(
        inputs,
        job=args.job,
        limits=evo.Limits(max_in_flight=32, requests_per_second=args.rate),
        compute=default_compute(args.actors),
        download_to=f"{out}/files",
    )
    target = f"{out}/outcomes" if "://" in out else os.path.abspath(f"{out}/outcomes")
    outcomes.write_parquet(target)
    oks = [row["ok"] for row in ray.data.read_parquet(target, columns=["ok"]).iter_rows()]
    print(f"{len(oks)} inputs, {sum(oks)} completed; outcomes in {target}")


if __name__ == "__main__":
    main()
