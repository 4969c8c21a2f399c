"""One real 1K image against the real API; skipped (visibly) without EVOLINK_API_KEY."""

from __future__ import annotations

import os

import pytest

import evolink_async as evo

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not os.environ.get("EVOLINK_API_KEY"), reason="live test: set EVOLINK_API_KEY to run it"),
]


async def test_live_generates_one_1k_image() -> None:
    async with evo.AsyncClient() as client:
        task = await client.generate("a small red apple on a white table", size="1:1", quality="1K", timeout=600)
    assert task.status is evo.TaskStatus.COMPLETED
    assert task.results
    assert all(url.startswith("https://") for url in task.results)
