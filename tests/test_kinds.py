"""Video and audio tasks next to images: one client, the request's type picks the endpoint, over real HTTP."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import evolink_async as evo
from evolink_async._converter import structure_task, task_to_wire
from evolink_async.testing import FakeEvolink, TaskPlan

VIDEO = "veo3.1-fast"
SONG = "suno-v4.5"


def creates_at(fake: FakeEvolink, path: str) -> int:
    return sum(1 for r in fake.stats.requests_seen if r.method == "POST" and r.path == path)


async def test_a_video_goes_to_the_video_endpoint_and_downloads_as_mp4(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    request = evo.VideoRequest("a paper boat [duration:0.2]", model=VIDEO, duration=4, aspect_ratio="16:9")
    task = await client.generate(request)
    assert creates_at(fake, "/v1/videos/generations") == 1
    assert creates_at(fake, "/v1/images/generations") == 0
    assert (task.type, task.object) == ("video", "video.generation.task")
    assert fake.tasks[task.id].request == {
        "prompt": request.prompt,
        "model": VIDEO,
        "duration": 4,
        "aspect_ratio": "16:9",
    }
    [path] = await client.download(task, tmp_path)
    assert path.name == f"{task.id}-0.mp4"
    assert path.read_bytes()[4:8] == b"ftyp", "an MP4 starts with its ftyp box"


async def test_a_song_has_its_result_data_audio_urls_as_results_and_not_its_cover(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    task = await client.generate(evo.AudioRequest("a calm piano song [results:2] [duration:0.2]", model=SONG))
    assert creates_at(fake, "/v1/audios/generations") == 1
    assert task.type == "audio"
    assert len(task.result_data) == 2
    assert task.results == tuple(item.audio_url for item in task.result_data)
    covers = {item.image_url for item in task.result_data}
    streams = {item.stream_audio_url for item in task.result_data}
    assert None not in covers
    assert not covers & set(task.results)
    assert None not in streams
    assert not streams & set(task.results)
    first = task.result_data[0]
    assert (first.title, first.duration, first.url) == (fake.tasks[task.id].prompt[:40], 1.0, first.audio_url)
    paths = await client.download(task, tmp_path)
    assert [p.suffix for p in paths] == [".mp3", ".mp3"]
    head = paths[0].read_bytes()[:3]
    assert head == b"ID3" or head[0] == 0xFF, "an MP3 starts with an ID3 tag or a frame sync"


async def test_a_video_task_that_gives_no_estimate_is_first_read_after_the_video_estimate(
    make_client: Callable[..., evo.AsyncClient],
) -> None:
    # No task_info.estimated_time at all: the poller falls back on the estimate for the task's kind.
    plan = TaskPlan(duration=0.05, extra={"task_info": {"can_cancel": True}})
    poll = evo.PollPolicy(
        min_interval=0.05, default_estimate=0.1, video_estimate=2.0, first_check=0.5, jitter=0, batch=False
    )
    async with FakeEvolink(plan=lambda body: plan) as fake, make_client(fake, poll=poll) as client:
        image = await client.generate("a cat")
        video = await client.generate(evo.VideoRequest("a cat running", model=VIDEO))

    seen = fake.stats.requests_seen
    created = next(r.time for r in seen if r.path == "/v1/videos/generations")
    first_read = min(r.time for r in seen if r.path == f"/v1/tasks/{video.id}")
    assert fake.stats.reads[video.id] == 1, "read once, when it was due, not polled on the image schedule"
    assert first_read - created >= 0.9  # first_check (0.5) x video_estimate (2 s); the image's came at 0.05 s
    assert image.is_final


async def test_a_batch_mixes_kinds_and_a_rerun_with_its_journal_sends_nothing(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    inputs: list[Any] = [
        "an image [duration:0.1]",
        {"type": "video", "prompt": "a video [duration:0.1]", "model": VIDEO, "duration": 5, "seed": 7},
        evo.AudioRequest("a song [duration:0.1]", model=SONG),
        {"type": "audio", "prompt": "a jingle [duration:0.1]", "model": SONG, "instrumental": True},
    ]
    journal = tmp_path / "mixed.sqlite"
    first = await client.generate_all(inputs, journal=journal, download_to=tmp_path / "out")
    assert [o.task.type if o.task else o.error for o in first] == ["image", "video", "audio", "audio"]
    assert all(o.ok and o.files for o in first)
    assert [p.suffix for o in first for p in o.files] == [".png", ".mp4", ".mp3", ".mp3"]
    video_body = fake.tasks[first[1].task.id].request  # type: ignore[union-attr]
    assert video_body["seed"] == 7, "a field the SDK does not know passes through"
    requests = fake.stats.requests
    again = await client.generate_all(inputs, journal=journal, download_to=tmp_path / "out")
    assert [o.task.id for o in again] == [o.task.id for o in first]  # type: ignore[union-attr]
    assert all(o.resumed for o in again)
    assert fake.stats.requests == requests


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"type": "video", "prompt": "no model"}, "model"),
        ({"type": "clip", "prompt": "x", "model": VIDEO}, "type"),
        ({"type": "video", "prompt": "x", "model": VIDEO, "quality": "1080"}, "quality"),
        ({"type": "audio", "prompt": "x", "model": SONG, "custom_mode": True, "title": "t"}, "style"),
    ],
)
async def test_a_bad_input_of_a_batch_names_its_field_and_nothing_is_sent(
    fake: FakeEvolink, client: evo.AsyncClient, item: dict[str, Any], field: str
) -> None:
    [outcome] = await client.generate_all([item])
    assert isinstance(outcome.error, evo.ValidationError)
    assert outcome.error.field == field
    assert fake.stats.create_requests == 0


async def test_a_batch_wide_field_a_kind_does_not_have_is_an_error_for_that_input(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    inputs = ["an image [duration:0.1]", {"type": "video", "prompt": "a video", "model": VIDEO}]
    image, video = await client.generate_all(inputs, size="16:9")
    assert image.ok
    assert isinstance(video.error, evo.ValidationError)
    assert video.error.field == "size"
    assert fake.stats.create_requests == 1


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: evo.VideoRequest("x", model=VIDEO, duration=0), "duration"),
        (lambda: evo.VideoRequest("x", model=VIDEO, duration=True), "duration"),
        (lambda: evo.VideoRequest("x", model=VIDEO, aspect_ratio="2:1"), "aspect_ratio"),
        (lambda: evo.VideoRequest("x", model=VIDEO, image_urls=["https://e.com/a.png"] * 10), "image_urls"),
        (lambda: evo.VideoRequest("x" * 5001, model=VIDEO), "prompt"),
        (lambda: evo.VideoRequest("x", model=VIDEO, generate_audio="yes"), "generate_audio"),  # type: ignore[arg-type]
        (lambda: evo.VideoRequest("x", model=" "), "model"),
        (lambda: evo.VideoRequest("x", model=VIDEO, extra={"duration": 3}), "extra['duration']"),
        (lambda: evo.AudioRequest("x" * 501, model=SONG), "prompt"),
        (lambda: evo.AudioRequest("", model=SONG), "prompt"),
        (lambda: evo.AudioRequest("x", model=SONG, duration=20), "duration"),
        (lambda: evo.AudioRequest("x", model=SONG, vocal_gender="f"), "vocal_gender"),
        (lambda: evo.AudioRequest("x", model=SONG, custom_mode=True, style="pop", title="t" * 81), "title"),
        (lambda: evo.AudioRequest("x", model=SONG, custom_mode=True, style="pop"), "title"),
    ],
)
def test_documented_rules_of_video_and_audio_are_checked_before_sending(build: Callable[[], Any], field: str) -> None:
    with pytest.raises(evo.ValidationError) as caught:
        build()
    assert caught.value.field == field


def test_custom_mode_lyrics_may_be_long_and_an_instrumental_needs_none() -> None:
    song = evo.AudioRequest("[Verse]\n" + "la " * 1500, model=SONG, custom_mode=True, style="pop", title="La")
    assert len(song.prompt) > 500
    evo.AudioRequest("", model=SONG, custom_mode=True, instrumental=True, style="ambient", title="Air")


async def test_submit_then_wait_works_for_a_video_and_keywords_amend_it(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    task = await client.submit(evo.VideoRequest("a wave [duration:0.1]", model=VIDEO), callback_url=None)
    assert task.type == "video"
    final = await client.wait(task)
    assert final.results
    assert final.results[0].endswith(".mp4")
    with pytest.raises(evo.ValidationError, match="size"):
        await client.submit(evo.VideoRequest("x", model=VIDEO), size="16:9")
    assert fake.stats.create_requests == 1


def test_a_task_with_both_results_and_result_data_keeps_results_and_survives_the_journal() -> None:
    data = {
        "id": "task-unified-1-abc",
        "status": "completed",
        "type": "audio",
        "results": ["https://files.evolink.ai/a.mp3"],
        "result_data": [{"audio_url": "https://files.evolink.ai/b.mp3", "tags": ["pop", "calm"], "lyrics": "la"}],
    }
    task = structure_task(data)
    assert task.results == ("https://files.evolink.ai/a.mp3",)
    assert task.result_data[0].tags == "pop, calm"
    assert task.result_data[0].extra == {"lyrics": "la"}
    assert structure_task(task_to_wire(task)) == task
    only_data = structure_task({**data, "results": None})
    assert only_data.results == ("https://files.evolink.ai/b.mp3",)
    assert structure_task(task_to_wire(only_data)) == only_data


def test_result_data_of_an_unreadable_shape_is_an_error_not_an_empty_list() -> None:
    with pytest.raises(evo.MalformedResponseError, match="result_data"):
        structure_task({"id": "task-unified-1-abc", "status": "completed", "result_data": "b.mp3"})


async def test_a_budget_holds_in_a_batch_that_mixes_prices(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    # An image costs 1.6 credits here, a 10-second video 20: each kind's price is learned by its own first create.
    inputs: list[Any] = ["an image [duration:0.05]"]
    inputs += [evo.VideoRequest(f"video {i} [duration:0.05]", model=VIDEO, duration=10) for i in range(5)]
    outcomes = await client.generate_all(inputs, budget=30)
    charged = sum(fake.tasks[o.task.id].cost for o in outcomes if o.task is not None)
    assert charged <= 30
    assert sum(o.ok for o in outcomes) == 2
    assert all(isinstance(o.error, evo.BudgetExceededError) for o in outcomes if not o.ok)


def test_a_duration_that_is_not_a_finite_number_is_refused() -> None:
    with pytest.raises(evo.ValidationError, match="finite"):
        evo.VideoRequest("x", model=VIDEO, duration=float("inf"))
