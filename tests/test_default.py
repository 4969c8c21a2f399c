"""``evolink_async.generate(...)``: the one-liner on a default sync client, closed at exit."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import anyio
import anyio.from_thread
import pytest

import evolink_async as evo
from evolink_async import _default
from evolink_async.testing import FakeEvolink

SCRIPT = """
import evolink_async as evo
task = evo.generate("a lighthouse [duration:0.1]", size="16:9")
again = evo.generate(prompt="a fox [duration:0.1]")
print(task.status.value, again.status.value, evo._default.default_client() is evo._default.default_client())
"""


async def test_a_script_generates_without_a_client_and_exits_cleanly(fake: FakeEvolink) -> None:
    env = {**os.environ, "EVOLINK_API_KEY": fake.api_key, "EVOLINK_BASE_URL": fake.base_url, "PYTHONWARNINGS": "error"}
    with anyio.fail_after(30):
        proc = await anyio.run_process([sys.executable, "-c", SCRIPT], env=env, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().split() == ["completed", "completed", "True"]
    # Closed at exit: no "Unclosed client session" or thread complaints.
    assert proc.stderr.decode() == ""
    assert fake.stats.creates == 2


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEvolink]:
    with anyio.from_thread.start_blocking_portal() as portal, portal.wrap_async_context_manager(FakeEvolink()) as fake:
        monkeypatch.setenv("EVOLINK_API_KEY", fake.api_key)
        monkeypatch.setenv("EVOLINK_BASE_URL", fake.base_url)
        try:
            yield fake
        finally:
            _default._close()


def test_one_default_client_serves_every_call_until_closed(sim: FakeEvolink) -> None:
    first = evo.generate("a [duration:0.1]")
    client = _default.default_client()
    assert evo.generate("b [duration:0.1]").status is evo.TaskStatus.COMPLETED
    assert _default.default_client() is client
    assert first.id in sim.tasks
    _default._close()  # what the interpreter runs at exit
    with pytest.raises(evo.ClientStateError):
        client.generate("c")


def test_a_missing_key_raises_and_keeps_no_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVOLINK_API_KEY", raising=False)
    with pytest.raises(evo.ConfigurationError):
        evo.generate("a cat")
    assert _default._client is None


def test_bad_input_is_refused_before_any_request(sim: FakeEvolink) -> None:
    with pytest.raises(evo.ValidationError) as info:
        evo.generate("a cat", size="7:3")  # type: ignore[arg-type]
    assert info.value.field == "size"
    assert sim.stats.create_requests == 0
