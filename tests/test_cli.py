"""The `evolink` command against the simulator: output, exit codes, one-line errors, the key never shown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from evolink_async import _cli
from evolink_async.testing import FakeEvolink


def _main(argv: list[str]) -> int:
    """``_cli.main``, with argparse's exit (a usage error) turned into its exit code, as the shell sees it."""
    try:
        return _cli.main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


async def run_cli(
    args: list[str], *, fake: FakeEvolink | None, capsys: pytest.CaptureFixture[str], key: str | None = None
) -> tuple[int, str, str]:
    """Run `evolink ARGS` in a worker thread (its own event loop), as the console script would."""
    env_key = key if key is not None else (fake.api_key if fake is not None else None)
    argv = ([] if fake is None else ["--base-url", fake.base_url]) + args
    old = os.environ.get("EVOLINK_API_KEY")
    if env_key is None:
        os.environ.pop("EVOLINK_API_KEY", None)
    else:
        os.environ["EVOLINK_API_KEY"] = env_key
    try:
        code = await anyio.to_thread.run_sync(_main, argv)
    finally:
        if old is None:
            os.environ.pop("EVOLINK_API_KEY", None)
        else:
            os.environ["EVOLINK_API_KEY"] = old
    out, err = capsys.readouterr()
    if fake is not None:
        assert fake.api_key not in out + err
    return code, out, err


async def test_generate_prints_urls_and_saves_files(
    fake: FakeEvolink, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = await run_cli(
        ["generate", "a cat [duration:0.1]", "--size", "16:9", "--out", str(tmp_path)], fake=fake, capsys=capsys
    )
    assert code == 0
    assert "/files/" in out
    saved = list(tmp_path.glob("*.png"))
    assert len(saved) == 1
    assert f"saved {saved[0]}" in out


async def test_generate_json_output_is_the_task(fake: FakeEvolink, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await run_cli(["generate", "a fox [duration:0.1]", "--json"], fake=fake, capsys=capsys)
    assert code == 0
    data = json.loads(out)
    assert data["task"]["status"] == "completed"
    assert data["task"]["id"] in fake.tasks
    assert data["files"] == []


async def test_invalid_option_is_one_line_before_any_request(
    fake: FakeEvolink, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = await run_cli(["generate", "a cat", "--size", "7:3"], fake=fake, capsys=capsys)
    assert code == 2  # a usage error: nothing was sent
    assert err.strip().count("\n") == 0
    assert "size" in err
    assert "Traceback" not in err
    assert fake.stats.create_requests == 0


async def test_failed_task_exits_non_zero_with_its_code(fake: FakeEvolink, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = await run_cli(["generate", "x [fail:service_error] [duration:0.1]"], fake=fake, capsys=capsys)
    assert code == 1
    assert "service_error" in err
    assert "task-unified-" in err


async def test_wrong_key_is_one_clear_line_and_never_echoed(
    fake: FakeEvolink, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await run_cli(["credits"], fake=fake, capsys=capsys, key="sk-evo-wrong-key-123456")
    assert code == 1
    assert "401" in err
    assert "sk-evo-wrong-key-123456" not in out + err
    assert "Traceback" not in err


def test_missing_key_says_how_to_fix_it(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVOLINK_API_KEY", raising=False)
    assert _cli.main(["credits"]) == 2
    assert "EVOLINK_API_KEY" in capsys.readouterr().err


async def test_credits_task_get_and_wait(fake: FakeEvolink, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await run_cli(["credits", "--json"], fake=fake, capsys=capsys)
    assert code == 0
    assert json.loads(out)["remaining"] == 1000.0
    code, out, _ = await run_cli(["generate", "x [duration:0.3]", "--json"], fake=fake, capsys=capsys)
    task_id = json.loads(out)["task"]["id"]
    code, out, _ = await run_cli(["task", "get", task_id], fake=fake, capsys=capsys)
    assert code == 0
    assert task_id in out
    assert "completed" in out
    code, out, _ = await run_cli(["task", "wait", task_id, "--json"], fake=fake, capsys=capsys)
    assert json.loads(out)["status"] == "completed"
    code, _, err = await run_cli(["task", "get", "task-unified-1-zzzzzzzz"], fake=fake, capsys=capsys)
    assert code == 1
    assert "404" in err


async def test_batch_file_of_prompts_and_json_lines(
    fake: FakeEvolink, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    batch = tmp_path / "prompts.txt"
    batch.write_text(
        'a cat [duration:0.1]\n\n{"prompt": "a fox [duration:0.2]", "size": "9:16"}\na dog [duration:0.1]\n'
    )
    out_dir = tmp_path / "out"
    code, out, _ = await run_cli(
        ["batch", str(batch), "--out", str(out_dir), "--concurrency", "2", "--journal", str(tmp_path / "j.sqlite")],
        fake=fake,
        capsys=capsys,
    )
    assert code == 0
    assert "completed" in out
    assert len(list(out_dir.glob("*.png"))) == 3
    assert fake.stats.creates == 3
    assert sorted(t.size or "" for t in fake.tasks.values()) == ["", "", "9:16"]
    # Rerun with the journal: nothing is created again.
    code, out, _ = await run_cli(
        ["batch", str(batch), "--out", str(out_dir), "--journal", str(tmp_path / "j.sqlite")], fake=fake, capsys=capsys
    )
    assert code == 0
    assert "resumed from journal" in out
    assert fake.stats.create_requests == 3


async def test_batch_with_failures_exits_non_zero_and_lists_them(
    fake: FakeEvolink, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    batch = tmp_path / "prompts.txt"
    batch.write_text("ok [duration:0.1]\nbad [fail:content_policy_violation] [duration:0.1]\n")
    code, out, _ = await run_cli(["batch", str(batch)], fake=fake, capsys=capsys)
    assert code == 1
    assert "content_policy_violation" in out
    assert "[fail:content_policy_violation]" in out  # user text is shown, not eaten as markup


async def test_batch_budget_reports_what_was_not_submitted(
    fake: FakeEvolink, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    batch = tmp_path / "prompts.txt"
    batch.write_text("".join(f"p{i} [duration:0.1]\n" for i in range(5)))
    code, out, _ = await run_cli(
        ["batch", str(batch), "--budget", "3.3", "--concurrency", "1"], fake=fake, capsys=capsys
    )
    assert code == 1
    assert fake.stats.creates == 2  # 2 x 1.6 credits fit in 3.3, a third would not
    assert "not submitted" in out


async def test_batch_with_a_wrong_key_stops_submitting_and_says_why_in_one_line(
    fake: FakeEvolink, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Issue 9, defect 4: 300 creates, one by one, each answered 401.
    batch = tmp_path / "prompts.txt"
    batch.write_text("".join(f"p{i} [duration:0.1]\n" for i in range(300)))
    code, out, _ = await run_cli(
        ["batch", str(batch), "--concurrency", "4"], fake=fake, capsys=capsys, key="sk-wrong-key-0123456789"
    )
    assert code == 1
    assert fake.stats.create_requests <= 1 + 4
    assert "stopped submitting" in out
    assert "AuthenticationError (HTTP 401)" in out


async def test_batch_bad_json_line_is_one_line_error(
    fake: FakeEvolink, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    batch = tmp_path / "prompts.txt"
    batch.write_text('{"prompt": "x",\n')
    code, _, err = await run_cli(["batch", str(batch)], fake=fake, capsys=capsys)
    assert code == 2
    assert "prompts.txt:1" in err
    assert "Traceback" not in err


async def test_a_misspelled_field_in_a_json_line_is_refused_with_a_suggestion_before_anything_is_sent(
    fake: FakeEvolink, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Issue 9, defect 5: the same "did you mean" as the Python keyword, for the whole file, before any create.
    batch = tmp_path / "prompts.txt"
    batch.write_text('ok [duration:0.1]\n\n{"prompt": "x [duration:0.1]", "sise": "1:1"}\n')
    code, _, err = await run_cli(["batch", str(batch)], fake=fake, capsys=capsys)
    assert code == 2
    assert "prompts.txt:3" in err
    assert "did you mean 'size'" in err
    assert fake.stats.create_requests == 0


async def test_a_field_the_sdk_does_not_know_passes_through_when_given_as_extra(
    fake: FakeEvolink, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    batch = tmp_path / "prompts.txt"
    batch.write_text('{"prompt": "x [duration:0.1]", "extra": {"new_field": 7}}\n')
    code, _, _ = await run_cli(["batch", str(batch)], fake=fake, capsys=capsys)
    assert code == 0
    (task,) = fake.tasks.values()
    assert task.request["new_field"] == 7


async def test_the_failure_table_groups_by_kind_with_counts_file_lines_and_task_ids(
    fake: FakeEvolink, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Issue 9, defect 5: grouped by the message text (which holds keys and request ids), every row said 1.
    batch = tmp_path / "prompts.txt"
    bad = "bad {} [fail:content_policy_violation] [duration:0.1]"
    batch.write_text(f"ok [duration:0.1]\n\n{bad.format(1)}\n{bad.format(2)}\n\n{bad.format(3)}\n")
    code, out, _ = await run_cli(["batch", str(batch), "--concurrency", "1"], fake=fake, capsys=capsys)
    assert code == 1
    row = next(line for line in out.splitlines() if "TaskFailedError" in line)
    assert row.split("│")[1].strip() == "3"  # one row for the three, counted
    # Blank lines are no input, yet the failures are named by their lines in the file: 3, 4 and 6.
    assert "line 3" in out
    assert "line 4" in out
    failed_ids = [t.id for t in fake.tasks.values() if t.request["prompt"].startswith("bad 1")]
    assert failed_ids[0] in out


def test_demo_runs_without_key_or_network_and_replaces_what_a_previous_demo_wrote(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / "mine.png").write_bytes(b"not the demo's")
    (tmp_path / "outside.png").write_bytes(b"not in the folder")
    # What a previous demo left: its files and its record of them (one name edited to point outside).
    previous = ["index.html", "task-old-0.png", "task-old-1.mp4", "../outside.png"]
    for name in previous[:3]:
        (out / name).write_bytes(b"old")
    (out / _cli.DEMO_MANIFEST).write_text(json.dumps({"files": previous}))
    env = {k: v for k, v in os.environ.items() if k != "EVOLINK_API_KEY"}
    result = subprocess.run(
        [sys.executable, "-m", "evolink_async._cli", "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "batch summary" in result.stdout
    assert "no task was paid for twice" in result.stdout
    assert "Traceback" not in result.stderr
    # Four prompts are scripted to fail; every other result is saved: pictures, a video and a song.
    assert len(list(out.glob("task-*.png"))) == len(_cli.DEMO_PROMPTS) - 4
    assert len(list(out.glob("*.mp4"))) == len(list(out.glob("*.mp3"))) == 1
    # The previous demo's files are gone, the user's own and anything outside the folder are not.
    names = {path.name for path in out.iterdir()}
    assert not names & {"task-old-0.png", "task-old-1.mp4"}
    assert {"mine.png", "index.html", _cli.DEMO_MANIFEST} <= names
    assert (tmp_path / "outside.png").exists()
    recorded = json.loads((out / _cli.DEMO_MANIFEST).read_text())["files"]
    assert sorted(recorded) == sorted(names - {"mine.png", _cli.DEMO_MANIFEST})


async def test_a_local_save_error_names_the_created_task(
    fake: FakeEvolink, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    code, _, err = await run_cli(
        ["generate", "a cat [duration:0.1]", "--out", str(not_a_folder)], fake=fake, capsys=capsys
    )
    assert code == 1
    (task_id,) = fake.tasks
    assert f"evolink task wait {task_id}" in err
    assert "Traceback" not in err


async def test_simulator_command_takes_the_simulators_own_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _cli.main(["simulator", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--duration" in out
    assert "--allow-local-callbacks" in out


async def test_video_and_audio_commands_save_their_files(
    fake: FakeEvolink, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = await run_cli(
        ["video", "a wave [duration:0.1]", "--model", "veo3.1-fast", "--duration", "5", "--out", str(tmp_path)],
        fake=fake,
        capsys=capsys,
    )
    assert code == 0
    [video] = tmp_path.glob("*.mp4")
    assert f"saved {video}" in out
    [task] = fake.tasks.values()
    assert task.kind == "video"
    assert task.request["duration"] == 5
    assert isinstance(task.request["duration"], int), "8, not 8.0: some models take whole seconds only"
    code, out, _ = await run_cli(
        ["audio", "a song [duration:0.1]", "--model", "suno-v5", "--instrumental", "--out", str(tmp_path)],
        fake=fake,
        capsys=capsys,
    )
    assert code == 0
    assert len(list(tmp_path.glob("*.mp3"))) == 1
    code, _, err = await run_cli(["audio", "x", "--model", "suno-v5", "--custom"], fake=fake, capsys=capsys)
    assert code == 2
    assert "style" in err
    assert fake.stats.create_requests == 2


async def test_a_local_image_is_uploaded_for_generate_and_by_upload(
    fake: FakeEvolink, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from evolink_async.testing._png import solid_png

    image = tmp_path / "ref.png"
    image.write_bytes(solid_png(8, 8, (1, 2, 3)))
    code, out, _ = await run_cli(["upload", str(image)], fake=fake, capsys=capsys)
    assert code == 0
    [uploaded] = fake.files_api.files.values()
    assert out.strip().endswith(uploaded.name)
    code, _, _ = await run_cli(["generate", "edit [duration:0.1]", "--image", str(image)], fake=fake, capsys=capsys)
    assert code == 0
    [task] = fake.tasks.values()
    second = list(fake.files_api.files.values())[-1]  # another process, another client: uploaded again
    assert second.original_name == "ref.png"
    assert task.request["image_urls"][0].endswith(second.name)
    code, out, err = await run_cli(["upload", str(image), "missing.png"], fake=fake, capsys=capsys)
    assert code == 2
    assert len(out.strip().splitlines()) == 1, "the first file's URL is printed before the second fails"
    assert "missing.png" in err
    code, _, err = await run_cli(["generate", "edit", "--image", "missing.png"], fake=fake, capsys=capsys)
    assert code == 2
    assert "missing.png" in err
    assert "does not exist" in err


async def test_a_batch_file_mixes_kinds_and_a_wrong_type_is_named_by_line(
    fake: FakeEvolink, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lines = [
        "an image [duration:0.1]",
        json.dumps({"type": "video", "prompt": "a clip [duration:0.1]", "model": "kling-v3-text-to-video"}),
        json.dumps({"type": "audio", "prompt": "a tune [duration:0.1]", "model": "suno-v5"}),
    ]
    batch = tmp_path / "mixed.jsonl"
    batch.write_text("\n".join(lines) + "\n")
    code, _, _ = await run_cli(["batch", str(batch), "--out", str(tmp_path / "out")], fake=fake, capsys=capsys)
    assert code == 0
    assert sorted(p.suffix for p in (tmp_path / "out").iterdir() if p.suffix != ".html") == [".mp3", ".mp4", ".png"]
    batch.write_text(lines[0] + "\n" + json.dumps({"type": "video", "prompt": "x", "model": "m", "sise": 1}) + "\n")
    code, _, err = await run_cli(["batch", str(batch)], fake=fake, capsys=capsys)
    assert code == 2
    assert f"{batch}:2" in err
    assert "sise" in err
    assert fake.stats.create_requests == 3


async def test_batch_interrupted_lists_the_ids_of_the_tasks_in_flight_in_its_last_lines(
    fake: FakeEvolink, tmp_path: Path
) -> None:
    import signal

    from conftest import until

    batch = tmp_path / "never.txt"
    batch.write_text("".join(f"[never] interrupted {i}\n" for i in range(6)))
    env = {**os.environ, "EVOLINK_API_KEY": fake.api_key}
    command = [sys.executable, "-m", "evolink_async._cli", "--base-url", fake.base_url, "batch", str(batch)]
    async with await anyio.open_process(command, env=env) as process:
        await until(lambda: fake.stats.creates == 6, limit=30)
        process.send_signal(signal.SIGINT)
        assert process.stderr is not None
        err = b"".join([chunk async for chunk in process.stderr]).decode()
        assert await process.wait() == _cli.EXIT_INTERRUPTED
    last = err.strip().splitlines()[-8:]
    assert "interrupted" in "\n".join(last), err
    for task_id in fake.tasks:
        assert any(task_id in line for line in last), f"{task_id} not in the last lines:\n{err}"
    assert fake.api_key not in err


# -- the batch file checked whole before the first create (issue 19, item 6) ------------------------------


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ('{"prompt": "a wide cat", "size": "17:9"}', "size"),
        ('{"type": "video", "prompt": "a clip"}', "model"),
        ('{"prompt": ""}', "prompt"),
        ('{"prompt": "an edit", "image_urls": ["missing.png"]}', "missing.png"),
    ],
)
async def test_batch_refuses_a_bad_value_on_any_line_before_the_first_create(
    fake: FakeEvolink, capsys: pytest.CaptureFixture[str], tmp_path: Path, line: str, named: str
) -> None:
    batch = tmp_path / "prompts.txt"
    batch.write_text(f"fine [duration:0.1]\n\n{line}\nalso fine [duration:0.1]\n")
    code, _, err = await run_cli(["batch", str(batch)], fake=fake, capsys=capsys)
    assert code == 2
    assert f"{batch}:3" in err
    assert named in err
    assert fake.stats.requests == 0


@pytest.mark.parametrize("line", ['"a quoted title"', "42", '["x"]', "null"])
async def test_batch_refuses_a_json_line_that_is_not_an_object_with_its_line_number(
    fake: FakeEvolink, capsys: pytest.CaptureFixture[str], tmp_path: Path, line: str
) -> None:
    batch = tmp_path / "prompts.txt"
    batch.write_text(f"fine [duration:0.1]\n{line}\n")
    code, _, err = await run_cli(["batch", str(batch)], fake=fake, capsys=capsys)
    assert code == 2
    assert f"{batch}:2" in err
    assert "--plain" in err
    assert fake.stats.requests == 0


async def test_batch_plain_sends_every_line_as_its_prompt_and_a_line_that_is_not_json_is_a_prompt(
    fake: FakeEvolink, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lines = ['"A Quoted Title" [duration:0.1]', '["lyrics"] [duration:0.1]', '{"prompt": "braces"} [duration:0.1]']
    batch = tmp_path / "songs.txt"
    batch.write_text("\n".join(lines) + "\n")
    code, _, err = await run_cli(["batch", str(batch), "--plain"], fake=fake, capsys=capsys)
    assert code == 0, err
    assert sorted(task.prompt for task in fake.tasks.values()) == sorted(lines)
    batch.write_text("[Verse 1] la la [duration:0.1]\n")  # not JSON: a prompt, with or without --plain
    code, _, err = await run_cli(["batch", str(batch)], fake=fake, capsys=capsys)
    assert code == 0, err
    assert "[Verse 1] la la [duration:0.1]" in {task.prompt for task in fake.tasks.values()}


async def test_batch_dry_run_checks_counts_and_prices_without_sending_anything(
    fake: FakeEvolink, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    batch = tmp_path / "prompts.txt"
    batch.write_text("a [duration:0.1]\n\nb [duration:0.1]\n" + json.dumps({"prompt": "c [duration:0.1]"}) + "\n")
    code, out, _ = await run_cli(["batch", str(batch), "--dry-run"], fake=fake, capsys=capsys)
    assert code == 0
    assert "3 inputs" in out
    assert "price unknown" in out
    code, out, _ = await run_cli(["batch", str(batch), "--dry-run", "--cost-per-task", "1.5"], fake=fake, capsys=capsys)
    assert code == 0
    assert "4.5 credits" in out
    assert fake.stats.requests == 0
    journal = tmp_path / "j.sqlite"
    code, _, _ = await run_cli(["batch", str(batch), "--journal", str(journal)], fake=fake, capsys=capsys)
    assert code == 0
    batch.write_text(batch.read_text() + "d [duration:0.1]\n")
    requests = fake.stats.requests
    code, out, _ = await run_cli(
        ["batch", str(batch), "--dry-run", "--journal", str(journal)], fake=fake, capsys=capsys
    )
    assert code == 0
    assert "4 inputs" in out
    assert "6.4 credits" in out  # the price the journal learned: 1.6 a task
    assert fake.stats.requests == requests
