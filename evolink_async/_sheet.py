"""The contact sheet: an ``index.html`` beside a batch's saved results, one card per input.

``evolink batch --out DIR`` and ``evolink demo`` write it. A card shows the input's result files (images as
``<img>``, videos as ``<video>``, songs as ``<audio>``, by relative path, so the folder can be moved or
served as it is), its prompt, status, task id, credits and the time it took; a failed input shows its error.
Every text is HTML-escaped: prompts and server messages are data, never markup.

    sheet = ContactSheet(out_dir, title="evolink batch prompts.txt")
    run = client.generate_many(sheet.timed(inputs), download_to=out_dir)
    async for outcome in run:
        sheet.add(outcome)
    sheet.write(run.stats, elapsed)
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs

from . import errors
from ._batch import BatchStats, Outcome
from .models import AudioRequest, Task, VideoRequest

__all__ = ("SHEET_NAME", "Card", "ContactSheet")

SHEET_NAME = "index.html"
#: Cards kept for the sheet: a page of a million pictures helps nobody (and would hold them all in memory).
MAX_CARDS = 5000

_VIDEO = {".mp4", ".webm", ".mov"}
_AUDIO = {".mp3", ".wav", ".m4a", ".aac", ".ogg", ".flac"}


@attrs.frozen(kw_only=True)
class Card:
    """What the sheet shows of one input."""

    index: int
    prompt: str
    kind: str
    status: str
    task_id: str | None = None
    credits: float | None = None
    seconds: float | None = None
    files: tuple[str, ...] = ()  # paths relative to the sheet's folder, with "/" separators
    error: str | None = None
    resumed: bool = False  # a journal knew it from an earlier run: its time is this run's, not the task's
    custom_id: str | None = None  # the input's own id (checked printable when it was read)

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == "completed"


def _task_of(outcome: Outcome) -> Task | None:
    if outcome.task is not None:
        return outcome.task
    task = getattr(outcome.error, "task", None)
    return task if isinstance(task, Task) else None


def _prompt_of(outcome: Outcome) -> str:
    if outcome.request is not None:
        return outcome.request.prompt
    value = outcome.input
    prompt = value.get("prompt", "") if isinstance(value, dict) else getattr(value, "prompt", value)
    return str(prompt)


def _kind_of(outcome: Outcome, task: Task | None) -> str:
    if task is not None and task.type:
        return task.type
    if isinstance(outcome.request, VideoRequest):
        return "video"
    if isinstance(outcome.request, AudioRequest):
        return "audio"
    kind = outcome.input.get("type") if isinstance(outcome.input, dict) else None
    return str(kind) if kind else "image"


def _status_of(outcome: Outcome, task: Task | None) -> str:
    if task is not None:
        return task.raw_status or task.status.value
    if isinstance(outcome.error, errors.NotSubmittedError):
        return "not submitted"
    return "not created" if outcome.task_id is None else "unknown"


def _error_text(error: Exception | None) -> str | None:
    if error is None:
        return None
    if isinstance(error, errors.BudgetExceededError):
        return "not submitted: the budget was reached"
    return f"{type(error).__name__}: {error}"


def card_for(outcome: Outcome, folder: Path, seconds: float | None = None) -> Card:
    """The card of ``outcome``, its files given relative to ``folder``."""
    task = _task_of(outcome)
    usage = task.usage if task is not None else None
    credits = usage.credits_used if usage is not None else None
    files = tuple(Path(os.path.relpath(path, folder)).as_posix() for path in outcome.files)
    return Card(
        index=outcome.index,
        prompt=_prompt_of(outcome),
        kind=_kind_of(outcome, task),
        status=_status_of(outcome, task),
        task_id=outcome.task_id,
        credits=credits,
        seconds=seconds,
        files=files,
        error=_error_text(outcome.error),
        resumed=outcome.resumed,
        custom_id=outcome.custom_id,
    )


class ContactSheet:
    """Collects a card per outcome of a batch, then writes ``index.html`` into ``folder``."""

    def __init__(self, folder: Path, *, title: str, max_cards: int = MAX_CARDS) -> None:
        self.folder = folder
        self.title = title
        self.max_cards = max_cards
        self.cards: list[Card] = []
        self.inputs = 0
        self._pulled: list[float] = []

    def timed(self, inputs: Iterable[Any]) -> Iterator[Any]:
        """``inputs``, noting when the batch takes each one (the start of the time its card shows)."""
        for item in inputs:
            if len(self._pulled) < self.max_cards:
                self._pulled.append(time.monotonic())
            yield item

    def add(self, outcome: Outcome) -> None:
        self.inputs += 1
        if outcome.index >= self.max_cards:
            return
        started = self._pulled[outcome.index] if outcome.index < len(self._pulled) else None
        seconds = None if started is None else time.monotonic() - started
        self.cards.append(card_for(outcome, self.folder, seconds))

    @property
    def files(self) -> list[str]:
        """The sheet's file and every result file its cards show, relative to the folder."""
        return [SHEET_NAME, *(name for card in self.cards for name in card.files)]

    def write(self, stats: BatchStats, elapsed: float) -> Path:
        """Write the sheet (a temporary file, then a rename: a reader never sees half a page); return its path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        page = render(self.title, sorted(self.cards, key=lambda card: card.index), stats, elapsed, self.inputs)
        target = self.folder / SHEET_NAME
        partial = self.folder / f".{SHEET_NAME}.{os.getpid()}.part"
        partial.write_text(page, encoding="utf-8")
        os.replace(partial, target)
        return target


_STYLE = """
:root { color-scheme: dark; font-family: system-ui, -apple-system, "Segoe UI", sans-serif; }
body { margin: 0; background: #15171c; color: #e8e6e3; }
header { padding: 20px 28px 4px; }
h1 { font-size: 1.35rem; margin: 0 0 6px; }
.summary { color: #a9adb6; margin: 0; }
.sheet { display: grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr)); gap: 16px;
         padding: 16px 28px 32px; }
.card { background: #20232a; border: 1px solid #2c3038; border-radius: 10px; overflow: hidden;
        display: flex; flex-direction: column; }
.card.failed { border-color: #8c3434; }
.media { background: #0d0e11; display: flex; flex-direction: column; align-items: center; justify-content: center;
         gap: 6px; min-height: 120px; }
.media img, .media video { display: block; width: 100%; height: 190px; object-fit: contain; }
.media audio { width: 92%; margin: 10px 0; }
.none { color: #e06c6c; font-size: .9rem; padding: 16px; }
.body { padding: 10px 12px 12px; }
.prompt { margin: 0 0 8px; font-weight: 600; overflow-wrap: anywhere; }
.number { color: #8b909a; font-weight: 400; }
dl { display: grid; grid-template-columns: auto 1fr; gap: 2px 10px; margin: 0; font-size: .82rem; }
dt { color: #8b909a; }
dd { margin: 0; overflow-wrap: anywhere; }
.ok .status { color: #6fcf7f; }
.failed .status { color: #e06c6c; }
.error { color: #f0a0a0; font-size: .82rem; margin: 8px 0 0; overflow-wrap: anywhere; }
"""
#: The first cards' media load at once; later ones when scrolled to (a sheet may hold thousands).
_EAGER_CARDS = 100


def _media_html(name: str, alt: str, eager: bool) -> str:
    src = html.escape(quote(name), quote=True)
    suffix = os.path.splitext(name)[1].lower()
    if suffix in _VIDEO:
        return f'<video src="{src}" controls muted loop preload="metadata"></video>'
    if suffix in _AUDIO:
        return f'<audio src="{src}" controls preload="metadata"></audio>'
    loading = "" if eager else ' loading="lazy"'
    return f'<img src="{src}" alt="{html.escape(alt, quote=True)}"{loading}>'


def _card_html(card: Card) -> str:
    e = html.escape
    eager = card.index < _EAGER_CARDS
    media = "".join(_media_html(name, card.prompt, eager) for name in card.files)
    if not media:
        media = f'<div class="none">{"no file saved" if card.ok else e(card.status)}</div>'
    credits = "—" if card.credits is None else f"{card.credits:g}"
    seconds = "—" if card.seconds is None else f"{card.seconds:.1f} s"
    if card.resumed:
        seconds += " (resumed from the journal)"
    error = "" if card.error is None else f'\n    <p class="error">{e(card.error)}</p>'
    state = "ok" if card.ok else "failed"
    custom = (
        ""
        if card.custom_id is None
        else f'\n      <dt>id</dt><dd class="custom-id"><code>{e(card.custom_id)}</code></dd>'
    )
    return f"""<article class="card {state}" id="input-{card.index}" data-status="{e(card.status)}">
  <div class="media">{media}</div>
  <div class="body">
    <p class="prompt"><span class="number">#{card.index + 1}</span> {e(card.prompt)}</p>
    <dl>
      <dt>status</dt><dd class="status">{e(card.status)}</dd>
      <dt>kind</dt><dd>{e(card.kind)}</dd>
      <dt>task</dt><dd><code>{e(card.task_id or "—")}</code></dd>{custom}
      <dt>credits</dt><dd>{credits}</dd>
      <dt>time</dt><dd>{seconds}</dd>
    </dl>{error}
  </div>
</article>"""


def render(title: str, cards: list[Card], stats: BatchStats, elapsed: float, inputs: int) -> str:
    """The page: a header with the batch's figures, then the cards in input order."""
    e = html.escape
    figures = [f"{stats.completed} completed", f"{stats.failed} failed"]
    if stats.not_submitted:
        figures.append(f"{stats.not_submitted} not submitted")
    figures += [f"{stats.committed_credits:g} credits", f"{elapsed:.1f} s"]
    if inputs > len(cards):
        figures.append(f"showing the first {len(cards)} of {inputs} inputs")
    written = time.strftime("%Y-%m-%d %H:%M:%S")
    body = "\n".join(_card_html(card) for card in cards)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<style>{_STYLE}</style>
</head>
<body>
<header>
  <h1>{e(title)}</h1>
  <p class="summary">{e(" · ".join(figures))} · written {e(written)}</p>
</header>
<main class="sheet">
{body}
</main>
</body>
</html>
"""
