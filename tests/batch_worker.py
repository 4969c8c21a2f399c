"""A batch run in a process of its own, for the crash test in test_journal.py (not collected by pytest).

    python batch_worker.py BASE_URL API_KEY PROMPTS_FILE JOURNAL OUT_DIR

Reads one prompt per line, runs them through ``generate_many`` with the journal and downloads, and prints
one JSON line per outcome. Only the public API is used: this is what a user's script looks like.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio

import evolink_async as evo

FAST_POLL = evo.PollPolicy(min_interval=0.05, max_interval=0.5, default_estimate=1.0)
FAST_RETRY = evo.RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.05)
UNPACED = evo.Limits(max_in_flight=64, requests_per_second=None)


async def main(base_url: str, api_key: str, prompts_file: str, journal: str, out_dir: str) -> None:
    prompts = Path(prompts_file).read_text(encoding="utf-8").splitlines()
    client = evo.AsyncClient(api_key, base_url=base_url, poll=FAST_POLL, retry=FAST_RETRY, limits=UNPACED)
    async with client as c, c.generate_many(prompts, journal=journal, download_to=out_dir, max_in_flight=8) as run:
        async for o in run:
            line = {
                "index": o.index,
                "ok": o.ok,
                "task_id": o.task_id,
                "resumed": o.resumed,
                "files": [str(f) for f in o.files],
                "error": None if o.error is None else repr(o.error),
            }
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    base_url, api_key, prompts_file, journal, out_dir = sys.argv[1:6]
    anyio.run(main, base_url, api_key, prompts_file, journal, out_dir)
