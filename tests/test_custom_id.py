"""custom_id on batch inputs: file names, outcomes, the journal, the contact sheet, `evolink batch --results`;
a repeated id refused before its create. Against the simulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_cli import run_cli

import evolink_async as evo
from evolink_async._journal import Journal
from evolink_async._sheet import ContactSheet
from evolink_async.testing import FakeEvolink

QUICK = "[duration:0.1]"


def line(custom_id: Any, prompt: str = "a fox") -> dict[str, Any]:
    return {"custom_id": custom_id, "prompt": f"{prompt} {QUICK}"}


async def test_custom_id_names_the_files_and_the_outcome_and_is_not_sent(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    inputs = [line("cover", "two [results:2]"), line("back"), "no id " + QUICK]
    outcomes = await client.generate_all(inputs, download_to=tmp_path)
    assert [o.custom_id for o in outcomes] == ["cover", "back", None]
    assert [p.name for p in outcomes[0].files] == ["cover-0.png", "cover-1.png"]
    assert [p.name for p in outcomes[1].files] == ["back-0.png"]
    assert outcomes[2].files[0].name == f"{outcomes[2].task_id}-0.png"
    assert all("custom_id" not in task.request for task in fake.tasks.values())


async def test_a_repeated_custom_id_is_refused_before_its_create(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    pulled: list[int] = []

    def inputs() -> Iterator[dict[str, Any]]:
        for i, name in enumerate(["a", "b", "a", "c"]):
            pulled.append(i)
            yield line(name, f"p{i}")

    outcomes = await client.generate_all(inputs())
    assert [o.ok for o in outcomes] == [True, True, False, True]
    error = outcomes[2].error
    assert isinstance(error, evo.ValidationError)
    assert error.field == "custom_id"
    assert "'a' is repeated" in str(error)
    assert outcomes[2].task_id is None
    assert fake.stats.create_requests == 3
    assert sorted(t.request["prompt"] for t in fake.tasks.values()) == [f"p{i} {QUICK}" for i in (0, 1, 3)]


@pytest.mark.parametrize(
    ("first", "second"),
    [("Cover", "cover"), ("ABC", "abc")],
)
async def test_custom_ids_that_name_the_same_files_are_one_id_repeated(
    fake: FakeEvolink, client: evo.AsyncClient, first: str, second: str
) -> None:
    # Their files would be one on a case-insensitive file system (macOS, Windows).
    outcomes = await client.generate_all([line("Cover"), line("cover")])
    assert outcomes[0].ok
    assert isinstance(outcomes[1].error, evo.ValidationError)
    assert "names the same files" in str(outcomes[1].error)
    assert fake.stats.create_requests == 1


@pytest.mark.parametrize(("first", "second"), [("a/b", "a_b"), ("../x", "x")])
async def test_custom_ids_the_file_name_rule_changes_still_name_distinct_files(
    client: evo.AsyncClient, tmp_path: Path, first: str, second: str
) -> None:
    # A name the rule had to change carries a hash of the raw id (safe_stem), so it never takes another's file.
    outcomes = await client.generate_all([line(first), line(second)], download_to=tmp_path)
    assert all(o.ok for o in outcomes)
    names = [o.files[0].name for o in outcomes]
    assert len(set(names)) == 2
    assert names[1] == f"{second}-0.png"


@pytest.mark.parametrize("bad", ["", "  ", 7, "x" * 129, "red\x1b[31m", "tab\there"])
async def test_an_invalid_custom_id_fails_its_input_unsent(
    fake: FakeEvolink, client: evo.AsyncClient, bad: Any
) -> None:
    (outcome,) = await client.generate_all([line(bad)])
    assert isinstance(outcome.error, evo.ValidationError)
    assert outcome.error.field == "custom_id"
    assert outcome.custom_id is None  # never handed on to a file name or a terminal line
    assert fake.stats.create_requests == 0


async def test_a_custom_id_never_leaves_the_download_folder(client: evo.AsyncClient, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (outcome,) = await client.generate_all([line("../../etc/passwd")], download_to=out)
    assert outcome.ok
    assert [p.parent for p in outcome.files] == [out]
    assert outcome.files[0].name.startswith("etc_passwd~")  # changed, so it carries a hash of the id


async def test_ids_the_file_names_tell_apart_are_two_ids(client: evo.AsyncClient, tmp_path: Path) -> None:
    outcomes = await client.generate_all([line("a/b"), line("a_b"), line("../x"), line("x")], download_to=tmp_path)
    assert all(o.ok for o in outcomes)
    names = [o.files[0].name for o in outcomes]
    assert len(set(names)) == 4
    assert names[1] == "a_b-0.png"
    assert names[3] == "x-0.png"


async def test_the_journal_records_the_custom_id_and_a_rerun_keeps_the_names(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    journal = tmp_path / "batch.sqlite"
    inputs = [line("first"), line("second")]
    await client.generate_all(inputs, journal=journal, download_to=tmp_path / "out")
    store = Journal(journal)
    await store.open()
    try:
        assert [(await store.get(i)).custom_id for i in (0, 1)] == ["first", "second"]  # type: ignore[union-attr]
    finally:
        await store.close()
    again = await client.generate_all(inputs, journal=journal, download_to=tmp_path / "out")
    assert all(o.resumed for o in again)
    assert [o.files[0].name for o in again] == ["first-0.png", "second-0.png"]
    assert fake.stats.creates == 2


async def test_the_contact_sheet_shows_each_cards_custom_id(client: evo.AsyncClient, tmp_path: Path) -> None:
    sheet = ContactSheet(tmp_path, title="t")
    async with client.generate_many([line("<b>cover</b>")], download_to=tmp_path) as run:
        async for outcome in run:
            sheet.add(outcome)
        page = sheet.write(run.stats, 1.0).read_text()
    assert sheet.cards[0].custom_id == "<b>cover</b>"
    assert '<dd class="custom-id"><code>&lt;b&gt;cover&lt;/b&gt;</code></dd>' in page


async def test_cli_batch_writes_a_results_line_per_input(
    fake: FakeEvolink, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    batch = tmp_path / "in.jsonl"
    lines = [line("ok-1"), line("bad", "nope [fail:content_policy_violation]"), line("ok-2")]
    batch.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    results = tmp_path / "out.jsonl"
    code, out, _ = await run_cli(
        ["batch", str(batch), "--results", str(results), "--out", str(tmp_path / "img")], fake=fake, capsys=capsys
    )
    assert code == 1  # one input failed
    records = {r["custom_id"]: r for r in map(json.loads, results.read_text().splitlines())}
    assert set(records) == {"ok-1", "bad", "ok-2"}
    ok = records["ok-1"]
    assert ok["status"] == "completed"
    assert ok["task_id"] in fake.tasks
    assert ok["results"]
    assert ok["results"][0].startswith(fake.base_url)
    assert ok["files"] == [str(tmp_path / "img" / "ok-1-0.png")]
    assert ok["credits"] is not None
    assert ok["error"] is None
    bad = records["bad"]
    assert bad["status"] == "failed"
    assert bad["error"]["code"] == "content_policy_violation"
    assert bad["error"]["type"] == "TaskFailedError"
    assert "out.jsonl (3 lines)" in out


async def test_cli_batch_refuses_a_repeated_custom_id_by_line_before_sending(
    fake: FakeEvolink, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    batch = tmp_path / "in.jsonl"
    batch.write_text("\n".join(json.dumps(x) for x in [line("a"), line("b"), line("a")]) + "\n")
    code, _, err = await run_cli(["batch", str(batch)], fake=fake, capsys=capsys)
    assert code == 2
    assert "in.jsonl:3: custom_id: 'a' is repeated" in err
    assert fake.stats.create_requests == 0
