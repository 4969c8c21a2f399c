"""The contact sheet (``index.html``) in a real browser: Debian's Chromium, headless, driven by Selenium.

Selenium talks W3C WebDriver to the system ``chromedriver``, which Debian builds from the same source as its
``chromium``: the two always match, and nothing is downloaded (no browser build of the driver library's own).
``make test`` installs both (``system-deps`` in the Makefile); a plain ``pytest`` run tries the same, and
skips these tests only when they cannot be installed (no root, no sudo) — never in CI, where that fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

import evolink_async as evo
from evolink_async import _cli
from evolink_async._sheet import ContactSheet
from evolink_async.testing import FakeEvolink

ROOT = Path(__file__).resolve().parents[1]
DEMO_INPUTS = len(_cli.DEMO_PROMPTS) + len(_cli.DEMO_MEDIA)
DEMO_FAILURES = 4  # the prompts scripted to fail or be cancelled

# What the page says of itself, read in one script once everything has loaded (or failed to).
PAGE_STATE = """
const media = [...document.querySelectorAll('video, audio')];
return {
  cards: document.querySelectorAll('article.card').length,
  failed: [...document.querySelectorAll('article.card.failed')].map(c => c.querySelector('.error')?.textContent),
  images: [...document.images].map(i => ({src: i.getAttribute('src'), width: i.naturalWidth, done: i.complete})),
  media: media.map(m => ({tag: m.tagName, src: m.getAttribute('src'), ready: m.readyState, error: m.error?.code})),
  prompts: [...document.querySelectorAll('.prompt')].map(p => p.lastChild.textContent.trim()),
  injected: document.querySelectorAll('.prompt b, .prompt script').length,
  height: document.documentElement.scrollHeight,
};
"""
LOADED = """
return [...document.images].every(i => i.complete)
    && [...document.querySelectorAll('video, audio')].every(m => m.readyState >= 1 || m.error);
"""


def _chromium() -> tuple[str, str]:
    """Paths of chromium and chromedriver, installed through the Makefile when missing; skip if impossible."""
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if None in found:
        # The same step `make test` runs first; -B: the stamp may say done from before chromium was listed.
        with contextlib.suppress(OSError):  # no make: nothing to install with
            subprocess.run(["make", "-B", "-C", str(ROOT), "system-deps"], capture_output=True, timeout=900)
        found = shutil.which("chromium"), shutil.which("chromedriver")
    chromium, chromedriver = found
    if chromium is None or chromedriver is None:
        reason = (
            "Chromium could not be installed: `make system-deps` needs make, apt-get and root or sudo"
            " (apt-get install chromium chromium-driver)"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return chromium, chromedriver


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    chromium, chromedriver = _chromium()
    profile = tmp_path_factory.mktemp("chromium-profile")
    options = Options()
    options.binary_location = chromium
    # Headless as root, in a closed network: no sandbox, and none of Chromium's background connections.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    service = Service(executable_path=chromedriver, log_output=str(profile / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _open(browser: webdriver.Chrome, page: Path, screenshot: Path) -> dict[str, Any]:
    """Load ``page`` from disk, wait for its media, save a full-page screenshot; return what the page holds."""
    browser.set_window_size(1280, 900)
    browser.get(page.resolve().as_uri())
    WebDriverWait(browser, 30).until(lambda driver: driver.execute_script(LOADED))
    state: dict[str, Any] = browser.execute_script(PAGE_STATE)
    browser.set_window_size(1280, min(int(state["height"]) + 40, 16000))  # the whole page in one picture
    browser.save_screenshot(str(screenshot))
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return state


def _run_demo(out: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "EVOLINK_API_KEY"}
    result = subprocess.run(
        [sys.executable, "-m", "evolink_async._cli", "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_demo_sheet_has_a_card_per_input_and_every_image_and_player_loads_in_chromium(
    browser: webdriver.Chrome, tmp_path: Path
) -> None:
    out = tmp_path / "demo"
    _run_demo(out)
    state = _open(browser, out / "index.html", tmp_path / "contact-sheet.png")
    assert state["cards"] == DEMO_INPUTS
    assert len(state["images"]) == len(_cli.DEMO_PROMPTS) - DEMO_FAILURES
    assert [image for image in state["images"] if not image["width"] > 0] == []
    assert {image["src"] for image in state["images"]} == {path.name for path in out.glob("*.png")}
    assert sorted(m["tag"] for m in state["media"]) == ["AUDIO", "VIDEO"]
    assert [m for m in state["media"] if m["error"] is not None or m["ready"] < 1] == []  # the players read them
    assert len(state["failed"]) == DEMO_FAILURES
    assert all(error and "task_id=task-" in error for error in state["failed"])


HOSTILE = 'a <b>bold</b> & "quoted" <script>alert(1)</script> prompt'


async def test_batch_out_writes_a_sheet_whose_prompts_are_text_and_players_play(
    browser: webdriver.Chrome, fake: FakeEvolink, tmp_path: Path
) -> None:
    lines = [
        f"{HOSTILE} [duration:0.1]",
        "a fox [duration:0.1] [fail:content_policy_violation]",
        json.dumps({"type": "video", "prompt": "a wave [duration:0.1]", "model": "veo3.1-fast", "duration": 4}),
        json.dumps({"type": "audio", "prompt": "a jingle [duration:0.1]", "model": "suno-v4.5"}),
    ]
    batch = tmp_path / "prompts.txt"
    batch.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    os.environ["EVOLINK_API_KEY"] = fake.api_key
    try:
        argv = ["--base-url", fake.base_url, "batch", str(batch), "--out", str(out)]
        code = await anyio.to_thread.run_sync(_cli.main, argv)
    finally:
        del os.environ["EVOLINK_API_KEY"]
    assert code == 1  # one input failed
    state = _open(browser, out / "index.html", tmp_path / "batch-sheet.png")
    assert state["cards"] == len(lines)
    assert state["injected"] == 0  # the prompt's markup is shown as text, never parsed
    assert state["prompts"][0] == f"{HOSTILE} [duration:0.1]"
    assert [image["width"] > 0 for image in state["images"]] == [True]
    assert {m["src"].rsplit(".", 1)[1] for m in state["media"]} == {"mp4", "mp3"}
    assert [m for m in state["media"] if m["error"] is not None or m["ready"] < 1] == []
    assert len(state["failed"]) == 1
    assert "content_policy_violation" in state["failed"][0]


async def test_a_sheet_names_inputs_not_submitted_and_says_when_it_shows_only_the_first(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    sheet = ContactSheet(tmp_path, title="budget", max_cards=2)
    prompts = [f"cat {n} [duration:0.05]" for n in range(3)]
    started = time.monotonic()
    # 1.6 credits an image: the budget pays for the first input only.
    async with client.generate_many(sheet.timed(prompts), budget=2.0, max_in_flight=1, download_to=tmp_path) as run:
        async for outcome in run:
            sheet.add(outcome)
    page = sheet.write(run.stats, time.monotonic() - started).read_text(encoding="utf-8")
    cards = sorted(sheet.cards, key=lambda card: card.index)
    assert [(card.index, card.status) for card in cards] == [(0, "completed"), (1, "not submitted")]
    assert cards[0].seconds is not None
    assert cards[1].task_id is None
    assert page.count('<article class="card') == 2
    assert "showing the first 2 of 3 inputs" in page
    assert "not submitted: the budget was reached" in page
    assert sheet.files == ["index.html", *cards[0].files]
