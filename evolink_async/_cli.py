"""The ``evolink`` command: generate, video, audio, batch, upload, task get|wait, credits, simulator, demo.

The key comes from ``EVOLINK_API_KEY`` only (a key on the command line would show in ``ps``) and is never
printed. Errors print one line, not a traceback. Needs the ``cli`` extra (rich) for progress and tables.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import random
import sys
import time
import types
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from . import errors
from ._batch import BatchRun, Outcome, _price_class, _to_request
from ._client import AsyncClient
from ._config import ENV_API_KEY, Limits
from ._converter import task_to_wire
from ._custom_id import CustomIds
from ._files import check_local_sources
from ._journal import Journal
from ._requests import check_field_names, request_fields
from ._results import ResultsFile
from ._sheet import ContactSheet
from ._text import printable
from .models import REQUEST_KINDS, AudioRequest, ImageRequest, Request, Task, TaskStatus, VideoRequest

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

__all__ = ("main",)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CLIError(Exception):
    """A one-line error for the user (exit code 2 unless given)."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def _console(stderr: bool = False) -> Console:
    try:
        from rich.console import Console
    except ImportError:  # pragma: no cover - depends on the install
        raise CLIError("the evolink command needs the cli extra: pip install 'evolink-async[cli]'") from None
    return Console(stderr=stderr, highlight=False)


# -- inputs ------------------------------------------------------------------------------------------


def read_batch_file(
    path: Path, lines: list[int] | None = None, *, plain: bool = False
) -> Iterator[tuple[int, str | dict[str, Any]]]:
    """(line number, input) for each line of a batch file, lazily: a JSON object per line (request fields), or
    a plain prompt (a line that is not JSON; every line with ``plain``).

    ``lines`` gets the file's line number of each input, in input order (blank lines are no input).
    """
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            text = line.strip()
            if not text:
                continue
            if lines is not None:
                lines.append(number)
            yield number, text if plain else _parse_line(path, number, text)


def _parse_line(path: Path, number: int, text: str) -> str | dict[str, Any]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        if text.startswith("{"):
            raise CLIError(f"{path}:{number}: not valid JSON: {exc}") from None
        return text  # not JSON: a plain prompt
    if not isinstance(data, dict):
        raise CLIError(
            f"{path}:{number}: a line that is JSON must be an object of request fields, not "
            f"{_json_kind(data)}; --plain sends every line as it is, as a prompt"
        )
    try:
        kind = data.get("type", "image")
        cls = REQUEST_KINDS.get(kind) if isinstance(kind, str) else None
        if cls is None:
            raise errors.ValidationError("type", f"{kind!r} is not one of {', '.join(REQUEST_KINDS)}")
        # The same check as Python keywords: a misspelled field is refused, not sent. Fields the SDK does
        # not know go through when asked for explicitly: {"prompt": "...", "extra": {"new_field": 1}}.
        names = {k: v for k, v in data.items() if k not in ("prompt", "type", "custom_id")}
        check_field_names(names, known=request_fields(cls))
    except errors.ValidationError as exc:
        raise CLIError(f"{path}:{number}: {exc}") from None
    if isinstance(data.get("image_urls"), list):
        data["image_urls"] = [_image_source(item) for item in data["image_urls"]]
    return data


def _seconds(text: str) -> float:
    """A duration: sent as an integer when it is one (``8``, not ``8.0``)."""
    value = float(text)
    return int(value) if value.is_integer() else value


def _image_source(item: Any) -> Any:
    """A reference image named on the command line or in a batch file: a URL, or a local file to upload."""
    if isinstance(item, str) and not item.startswith(("http://", "https://")):
        return Path(item)  # relative to the current directory; missing files are named before anything is sent
    return item


def _json_kind(data: object) -> str:
    kinds = {str: "a string", list: "a list", bool: "true or false", type(None): "null"}
    return kinds.get(type(data), "a number")


def _check_batch_file(path: Path, fields: dict[str, Any], *, plain: bool = False) -> Counter[str]:
    """Every line parsed, built into its request and checked (local files too, custom ids unique) before anything
    is sent: the number of inputs of each price class."""
    if path.is_dir():
        raise CLIError(f"{path} is a directory: give a batch file (one prompt or JSON object per line)")
    if not path.is_file():
        raise CLIError(f"no such batch file: {path}")
    classes: Counter[str] = Counter()
    custom_ids = CustomIds()
    for number, item in read_batch_file(path, plain=plain):
        try:
            custom_ids.check(item)
            request = _to_request(item, fields)
            check_local_sources(request)
        except errors.ValidationError as exc:
            raise CLIError(f"{path}:{number}: {exc}") from None
        classes[_price_class(request)] += 1
    return classes


def _request_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in ("size", "quality", "model"):
        value = getattr(args, name, None)
        if value is not None:
            fields[name] = value
    if getattr(args, "image", None):
        fields["image_urls"] = [_image_source(item) for item in args.image]
    return fields


def _video_request(args: argparse.Namespace) -> VideoRequest:
    options = {"duration": args.duration, "quality": args.quality, "aspect_ratio": args.aspect_ratio}
    images = [_image_source(item) for item in args.image or ()]
    return VideoRequest(
        args.prompt,
        model=args.model,
        image_urls=images,
        generate_audio=True if args.generate_audio else None,
        **{k: v for k, v in options.items() if v is not None},
    )


def _audio_request(args: argparse.Namespace) -> AudioRequest:
    options = {
        "style": args.style,
        "title": args.title,
        "duration": args.duration,
        "negative_tags": args.negative_tags,
        "vocal_gender": args.vocal_gender,
    }
    return AudioRequest(
        args.prompt,
        model=args.model,
        custom_mode=True if args.custom else None,
        instrumental=True if args.instrumental else None,
        **{k: v for k, v in options.items() if v is not None},
    )


# -- the client --------------------------------------------------------------------------------------


def _client(args: argparse.Namespace, *, concurrency: int | None = None) -> AsyncClient:
    if not os.environ.get(ENV_API_KEY):
        raise CLIError(f"no API key: set {ENV_API_KEY} (try `evolink demo` to run without one)")
    limits = Limits() if concurrency is None else Limits(max_in_flight=concurrency)
    return AsyncClient(base_url=args.base_url, limits=limits)


def _task_line(task: Task) -> str:
    progress = f" {task.progress}%" if task.progress is not None and not task.is_final else ""
    return printable(f"{task.id}  {task.raw_status}{progress}")


# -- commands ----------------------------------------------------------------------------------------


async def cmd_generate(args: argparse.Namespace) -> int:
    return await _run_one(args, ImageRequest(args.prompt, **_request_fields(args)))


async def cmd_video(args: argparse.Namespace) -> int:
    return await _run_one(args, _video_request(args))


async def cmd_audio(args: argparse.Namespace) -> int:
    return await _run_one(args, _audio_request(args))


async def cmd_upload(args: argparse.Namespace) -> int:
    out = _console()
    async with _client(args) as client:
        for name in args.files:
            # One at a time, each printed as it is done: a later failure loses none of the earlier URLs.
            try:
                item = await client.upload(_image_source(name))
            except errors.EvolinkError as exc:
                raise CLIError(f"{name}: {exc}", EXIT_USAGE if isinstance(exc, errors.ValidationError) else 1) from None
            if args.json:
                out.print_json(data={"file": name, "id": item.id, "url": item.url, "expires_at": item.expires_at})
            else:
                out.print(printable(item.url), soft_wrap=True, markup=False)
    return EXIT_OK


async def _run_one(args: argparse.Namespace, request: Request) -> int:
    """Submit one task of any kind, wait with a status line, save its files; print URLs or JSON."""
    out = _console()
    err = _console(stderr=True)
    from rich.markup import escape  # after _console(): without the cli extra, that says what to install

    async with _client(args) as client:
        with err.status("generating…") as status:

            def show(task: Task) -> None:
                status.update(f"generating… {escape(_task_line(task))}")

            created = await client.submit(request)
            # Remembered so that an interrupt or an error can still name the task the user paid for.
            _RUNNING["task_id"] = created.id
            task = await client.wait(created, on_update=show, timeout=args.timeout)
        files = await client.download(task, args.out) if args.out else []
        _RUNNING.pop("task_id", None)
    if args.json:
        out.print_json(data={"task": task_to_wire(task), "files": [str(f) for f in files]})
    else:
        for url in task.results:
            out.print(printable(url), soft_wrap=True, markup=False)  # server text: no escape sequence reaches a tty
        for path in files:
            out.print(f"saved {path}", soft_wrap=True, markup=False)
    return EXIT_OK


async def cmd_task(args: argparse.Namespace) -> int:
    out = _console()
    async with _client(args) as client:
        if args.action == "get":
            task = await client.get_task(args.task_id)
        else:
            task = await client.wait(args.task_id, timeout=args.timeout, raise_on_failure=False)
    if args.json:
        out.print_json(data=task_to_wire(task))
    else:
        out.print(_task_line(task), markup=False)
        for url in task.results:
            out.print(printable(url), soft_wrap=True, markup=False)
        if task.error is not None:
            out.print(printable(f"error: {task.error.code}: {task.error.message}"), markup=False)
    return EXIT_FAILED if task.status in (TaskStatus.FAILED, TaskStatus.CANCELLED) else EXIT_OK


async def cmd_credits(args: argparse.Namespace) -> int:
    out = _console()
    async with _client(args) as client:
        credits = await client.credits()
    if args.json:
        out.print_json(
            data={
                "remaining": credits.remaining,
                "used": credits.used,
                "key_remaining": credits.key_remaining,
                "key_used": credits.key_used,
                "key_unlimited": credits.key_unlimited,
            }
        )
    else:
        out.print(f"remaining credits: {credits.remaining}")
        out.print(f"used credits:      {credits.used}")
    return EXIT_OK


async def cmd_batch(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if args.cost_per_task is not None and not 0 <= args.cost_per_task < math.inf:
        raise CLIError(f"--cost-per-task must be a finite number of credits >= 0, got {args.cost_per_task}")
    fields = _request_fields(args)
    classes = await anyio.to_thread.run_sync(functools.partial(_check_batch_file, path, fields, plain=args.plain))
    if args.dry_run:
        await _dry_run(path, classes, args.cost_per_task, args.journal)
        return EXIT_OK
    lines: list[int] = []
    out_dir = Path(args.out) if args.out else None
    inputs = (item for _, item in read_batch_file(path, lines, plain=args.plain))
    results = await anyio.to_thread.run_sync(ResultsFile, Path(args.results)) if args.results else None
    async with _client(args, concurrency=args.concurrency) as client:
        return await run_batch(
            client,
            inputs,
            lines=lines,
            total=classes.total(),
            out_dir=out_dir,
            journal=args.journal,
            budget=args.budget,
            cost_per_task=args.cost_per_task,
            fields=fields,
            console=_console(),
            sheet=None if out_dir is None else ContactSheet(out_dir, title=f"evolink batch {path.name}"),
            results=results,
            options={"retry_failed": args.retry_failed, "retry_delay": args.retry_delay},
        )


async def _learned_prices(journal: str, classes: Counter[str]) -> dict[str, float]:
    """The prices a journal's earlier runs learned, by class (none when there is no such journal yet)."""
    learned: dict[str, float] = {}
    if not await anyio.Path(journal).is_file():
        return learned
    record = Journal(journal)
    await record.open()
    try:
        for price_class in classes:
            price = await record.known_price(price_class)
            if price is not None:
                learned[price_class] = price
    finally:
        await record.close()
    return learned


async def _dry_run(path: Path, classes: Counter[str], cost_per_task: float | None, journal: str | None) -> None:
    """What a batch would send and cost: the inputs checked, priced from the journal's learned prices or
    ``--cost-per-task`` (the higher of the two, as the budget does), else said to be unknown."""
    learned = await _learned_prices(journal, classes) if journal is not None else {}
    out = _console()
    total = classes.total()
    out.print(f"{path}: {total} input{'s' if total != 1 else ''} checked, nothing sent", markup=False, soft_wrap=True)
    cost, unknown = 0.0, 0
    for price_class, count in sorted(classes.items()):
        guesses = [p for p in (learned.get(price_class), cost_per_task) if p is not None]
        if not guesses:
            unknown += count
            out.print(f"  {count} x {price_class}: price unknown", markup=False, soft_wrap=True)
            continue
        price = max(guesses)
        cost += count * price
        source = "learned by the journal" if price_class in learned and learned[price_class] == price else "given"
        out.print(f"  {count} x {price_class}: {price:g} credits each ({source})", markup=False, soft_wrap=True)
    known = f"{round(cost, 6):g} credits"
    if unknown:
        out.print(
            f"estimated cost: {known} and the price of {unknown} input{'s' if unknown != 1 else ''} unknown "
            "(--cost-per-task gives one; a run with --journal learns them)",
            markup=False,
            soft_wrap=True,
        )
    else:
        out.print(f"estimated cost: {known}", markup=False, soft_wrap=True)


def _progress_bar(console: Console) -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "[green]{task.fields[ok]} done[/] [red]{task.fields[failed]} failed[/] {task.fields[flight]} in flight"
            "{task.fields[skipped]}"
        ),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


async def run_batch(
    client: AsyncClient,
    inputs: Any,
    *,
    total: int,
    out_dir: Path | None,
    journal: str | None,
    budget: float | None,
    fields: dict[str, Any],
    console: Console,
    cost_per_task: float | None = None,
    show_outcomes: bool = False,
    lines: list[int] | None = None,
    sheet: ContactSheet | None = None,
    results: ResultsFile | None = None,
    options: Mapping[str, Any] = types.MappingProxyType({}),
) -> int:
    """The batch path shared by ``evolink batch`` and ``evolink demo``: progress bar, a summary, the contact sheet,
    the results file. ``options``: more ``generate_many`` options (``retry_failed``, ``retry_delay``)."""
    started = time.monotonic()
    failures: list[Outcome] = []
    resumed = 0
    if sheet is not None:
        inputs = sheet.timed(inputs)  # notes when each input is taken: the time its card shows
    run: BatchRun = client.generate_many(
        inputs, budget=budget, cost_per_task=cost_per_task, download_to=out_dir, journal=journal, **options, **fields
    )

    def take(outcome: Outcome) -> None:
        nonlocal resumed
        resumed += outcome.resumed
        if not outcome.ok:
            failures.append(outcome)
        if show_outcomes:
            _print_outcome(console, outcome)
        for sink in (sheet, results):
            if sink is not None:
                sink.add(outcome)

    await _drive(run, _progress_bar(console), total, take)
    elapsed = time.monotonic() - started
    if results is not None:
        results.close()
        console.print(f"results: {results.path} ({results.lines} lines)", soft_wrap=True, markup=False)
    _summary(console, run, failures, resumed, elapsed, out_dir)
    _failure_table(console, failures, lines)
    if sheet is not None:
        page = await anyio.to_thread.run_sync(sheet.write, run.stats, elapsed)
        console.print(f"contact sheet: {page}", soft_wrap=True, markup=False)
    return EXIT_FAILED if failures else EXIT_OK


async def _drive(run: BatchRun, progress: Progress, total: int, take: Callable[[Outcome], None]) -> None:
    """Run the batch under a live progress bar, handing each outcome to ``take`` as it comes."""
    with progress:
        bar = progress.add_task("batch", total=total, ok=0, failed=0, flight=0, skipped="")

        def refresh() -> None:
            s = run.stats
            skipped = f" {s.not_submitted} not submitted" if s.not_submitted else ""
            progress.update(bar, completed=s.done, ok=s.completed, failed=s.failed, flight=s.in_flight, skipped=skipped)

        async with run:
            try:
                async with anyio.create_task_group() as ticker:

                    async def tick() -> None:
                        while True:
                            refresh()
                            await anyio.sleep(0.25)

                    ticker.start_soon(tick)
                    async for outcome in run:
                        take(outcome)
                        refresh()
                    ticker.cancel_scope.cancel()
            except BaseException:
                _IN_FLIGHT[:] = run.task_ids_in_flight  # interrupted: the last lines name what goes on, paid
                raise
            refresh()


def _describe(outcome: Outcome) -> str:
    value = outcome.input
    prompt = value.get("prompt", "") if isinstance(value, dict) else getattr(value, "prompt", value)
    return printable(str(prompt)[:60])


def _print_outcome(console: Console, outcome: Outcome) -> None:
    from rich.markup import escape  # prompts and server text may hold [brackets]: never markup

    if outcome.ok:
        where = outcome.files[0] if outcome.files else (outcome.task.results[0] if outcome.task else "")
        where = printable(str(where))
        console.print(f"  [green]✓[/] {escape(f'{_describe(outcome):<45}')} {escape(where)}", soft_wrap=True)
    else:
        console.print(f"  [red]✗[/] {escape(f'{_describe(outcome):<45}')} {escape(_reason(outcome))}", soft_wrap=True)


def _reason(outcome: Outcome) -> str:
    return printable(_raw_reason(outcome))


def _raw_reason(outcome: Outcome) -> str:
    error = outcome.error
    if isinstance(error, errors.TaskFailedError):
        return f"{error.task.raw_status}: {error.code or 'no error code'}"
    if isinstance(error, errors.BudgetExceededError):
        return "not submitted: budget reached"
    if isinstance(error, errors.NotSubmittedError) and error.refusal is not None:
        return f"not submitted: creates refused ({type(error.refusal).__name__}, HTTP {error.refusal.status})"
    return f"{type(error).__name__}: {error}{_suggested(error)}"


def _summary(
    console: Console, run: BatchRun, failures: list[Outcome], resumed: int, elapsed: float, out_dir: Path | None
) -> None:
    from rich.markup import escape
    from rich.table import Table

    s = run.stats
    table = Table(title="batch summary", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("completed", str(s.completed))
    table.add_row("failed", str(s.failed))
    if s.not_submitted:
        table.add_row("not submitted", str(s.not_submitted))
    if resumed:
        table.add_row("resumed from journal", str(resumed))
    if s.replayed:
        table.add_row("creates replayed (not charged again)", str(s.replayed))
    if s.retried:
        table.add_row("failed tasks resubmitted (new tasks)", str(s.retried))
    table.add_row(
        "credits committed (all runs of this journal)" if resumed else "credits committed", f"{s.committed_credits:g}"
    )
    table.add_row("elapsed", f"{elapsed:.1f} s")
    if out_dir is not None:
        table.add_row("images in", escape(str(out_dir)))
    console.print(table)
    refusal = next((o.error.refusal for o in failures if isinstance(o.error, errors.NotSubmittedError)), None)
    if refusal is not None:
        # One line that says why the rest was not sent: the key, the credits or access to the model.
        why = escape(
            printable(f"{type(refusal).__name__} (HTTP {refusal.status}): {refusal.message}{_suggested(refusal)}")
        )
        console.print(
            f"[red]stopped submitting:[/] {why} — fix the key, credits or model access and rerun"
            " (with --journal, only the rest is sent)",
            soft_wrap=True,
        )


def _failure_kind(outcome: Outcome) -> str:
    """What a failure is, without what differs per input (keys, request ids): its class and code."""
    error = outcome.error
    if isinstance(error, errors.NotSubmittedError) and error.refusal is not None:
        return f"not submitted (creates refused: {type(error.refusal).__name__})"
    if isinstance(error, errors.BudgetExceededError):
        return "not submitted (budget reached)"
    code = getattr(error, "code", None)
    return printable(f"{type(error).__name__}" + (f" [{code}]" if code not in (None, "") else ""))


def _failure_table(console: Console, failures: list[Outcome], lines: list[int] | None) -> None:
    """Failures grouped by kind, with counts and the first few inputs of each (file line, task id)."""
    if not failures:
        return
    from rich.markup import escape
    from rich.table import Table

    groups: dict[str, list[Outcome]] = {}
    for outcome in failures:
        groups.setdefault(_failure_kind(outcome), []).append(outcome)
    table = Table(title="failures")
    table.add_column("count", justify="right")
    table.add_column("kind")
    table.add_column("first inputs (line: task id)")
    for kind, members in sorted(groups.items(), key=lambda item: -len(item[1])):
        where = ", ".join(f"{_input_ref(o, lines)}: {o.task_id or '-'}" for o in members[:3])
        table.add_row(str(len(members)), escape(kind), escape(where))
    console.print(table)
    for outcome in failures[:5]:  # the full text of the first few
        console.print(
            escape(f"  {_input_ref(outcome, lines)} {_describe(outcome)!r}: {_reason(outcome)}"), soft_wrap=True
        )


def _input_ref(outcome: Outcome, lines: list[int] | None) -> str:
    if lines is not None and outcome.index < len(lines):
        return f"line {lines[outcome.index]}"
    return f"#{outcome.index}"


DEMO_PROMPTS = [
    "a lighthouse at dusk, oil painting",
    "a red fox in fresh snow",
    "isometric city block at night, neon",
    "a bowl of ramen, studio lighting",
    "a paper boat on a puddle [fail:content_policy_violation]",
    "an astronaut tending a greenhouse",
    "a watercolor map of an imaginary island",
    "a cat playing on grass",
    "a steam locomotive crossing a viaduct",
    "macro photo of a dew drop on a leaf [fail:service_error]",
    "a cozy reading nook with rain outside",
    "a minimalist poster of a mountain range",
    "a koi pond seen from above",
    "a robot barista pouring latte art [cancel]",
    "a desert caravan under the milky way",
    "a stained glass owl",
    "a bonsai tree in a storm",
    "a retro arcade cabinet, product shot",
    "a hot air balloon over tulip fields",
    "a cathedral made of ice",
    "a origami crane on a desk",
    "a foggy pine forest at sunrise",
    "a vintage camera, exploded view",
    "a glass of lemonade, summer light [fail:generation_timeout]",
    "a tiny house on a cliff",
    "an underwater city with bioluminescence",
    "a chess board mid-game, top view",
    "a market street in the rain",
    "a snow leopard on a ridge",
    "a sailing ship in a bottle",
    "a field of sunflowers under storm clouds",
    "a neon sign that says OPEN",
    "a pixel-art castle",
    "a cup of coffee with steam shaped like a cat",
    "a mountain lake reflecting stars",
    "a fox spirit in a bamboo forest",
]
#: A video and a song beside the pictures: the contact sheet shows every kind.
DEMO_MEDIA: list[dict[str, Any]] = [
    {"type": "video", "prompt": "a paper lantern drifting over a lake at night", "model": "veo3.1-fast", "duration": 4},
    {"type": "audio", "prompt": "a calm piano piece for a rainy afternoon", "model": "suno-v4.5"},
]
_DEMO_SIZES = ("1:1", "16:9", "9:16", "4:3", "3:2")
#: The demo's own record of the files it wrote into its folder, so that the next run replaces them.
DEMO_MANIFEST = ".evolink-demo.json"


def _clear_previous_demo(out_dir: Path) -> int:
    """Remove what the last demo wrote into ``out_dir`` (the names in its manifest, nothing else); return the count."""
    try:
        names = json.loads((out_dir / DEMO_MANIFEST).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return 0  # no demo ran here (or its record is unreadable): touch nothing
    removed = 0
    for name in names:
        # Plain names in this folder only: a record edited by hand never reaches outside it.
        if isinstance(name, str) and name and Path(name).name == name and name not in (".", ".."):
            path = out_dir / name
            if path.is_file():
                path.unlink()
                removed += 1
    return removed


def _record_demo(out_dir: Path, files: list[str]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / DEMO_MANIFEST).write_text(json.dumps({"files": files}, indent=1) + "\n", encoding="utf-8")


async def cmd_demo(args: argparse.Namespace) -> int:
    from .testing import FakeEvolink, Fault, TaskPlan, directive_plan

    console = _console()
    rng = random.Random(args.seed)

    def plan(body: dict[str, Any]) -> TaskPlan:
        # Durations spread around the estimate, as real generations are.
        return directive_plan(body, default_duration=rng.uniform(0.8, 3.0))

    out_dir = Path(args.out)
    inputs = [{"prompt": p, "size": rng.choice(_DEMO_SIZES), "quality": "1K"} for p in DEMO_PROMPTS]
    inputs += [dict(item) for item in DEMO_MEDIA]
    sheet = ContactSheet(out_dir, title=f"evolink demo: {len(inputs)} inputs on the built-in simulator")
    await anyio.to_thread.run_sync(_clear_previous_demo, out_dir)
    async with FakeEvolink(plan=plan) as fake:
        # Rate limits and a flaky gateway, which the client absorbs without failing anything.
        fake.inject(Fault(route="create", kind="status", status=429, retry_after="1", times=2))
        fake.inject(Fault(route="create", kind="drop_after_create"))
        fake.inject(Fault(route="batch", kind="html", status=502))
        fake.inject(Fault(route="batch", kind="status", status=429))
        console.print(
            f"[bold]evolink demo[/]: {len(DEMO_PROMPTS)} pictures, a video and a song on the built-in simulator at "
            f"{fake.base_url} (no key, no network); 4 of them scripted to fail; injected 429s, a dropped create and "
            "a 502\n"
        )
        limits = Limits(max_in_flight=args.concurrency, requests_per_second=50)
        async with AsyncClient(fake.api_key, base_url=fake.base_url, limits=limits) as client:
            try:
                code = await run_batch(
                    client,
                    inputs,
                    total=len(inputs),
                    out_dir=out_dir,
                    journal=None,
                    budget=None,
                    fields={},
                    console=console,
                    show_outcomes=True,
                    sheet=sheet,
                )
            finally:  # even when interrupted: what it saved so far is the next run's to replace
                await anyio.to_thread.run_sync(_record_demo, out_dir, sheet.files)
        s = fake.stats
        console.print(
            f"server side: {s.creates} tasks created from {s.create_requests} create requests "
            f"({s.replays} idempotent replay, {s.rate_limited} answered 429), peak {s.max_running} running, "
            f"{s.read_requests + s.batch_requests} status requests; no task was paid for twice."
        )
    console.print(f"results saved in {out_dir}/; open {out_dir / 'index.html'} in a browser", markup=False)
    # The scripted failures are the point of the demo, not a fault of it.
    return EXIT_OK if code in (EXIT_OK, EXIT_FAILED) else code


def cmd_simulator(args: argparse.Namespace) -> int:
    from .testing.__main__ import run

    return run(args, args.simulator_parser)


# -- parsing -----------------------------------------------------------------------------------------


def _add_media_commands(sub: Any) -> None:
    """The ``video``, ``audio`` and ``upload`` commands."""
    p = sub.add_parser("video", help="generate a video for one prompt (Sora, Veo, Kling, Seedance…)")
    p.add_argument("prompt")
    p.add_argument("--model", required=True, help="video model id, e.g. veo3.1-fast")
    p.add_argument("--duration", type=_seconds, help="seconds (each model has its range)")
    p.add_argument("--quality", help="480p, 720p, 1080p or 4k")
    p.add_argument("--aspect-ratio", help="16:9, 9:16, 1:1, 4:3, 3:4, 21:9 or adaptive")
    p.add_argument("--image", action="append", metavar="URL|FILE", help="image-to-video reference (repeatable)")
    p.add_argument("--generate-audio", action="store_true", help="ask for a sound track (some models)")
    p.add_argument("--out", metavar="DIR", help="save the video into DIR")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the task as JSON")

    p = sub.add_parser("audio", help="generate music for one prompt (Suno)")
    p.add_argument("prompt", help="a description, or lyrics with --custom")
    p.add_argument("--model", required=True, help="audio model id, e.g. suno-v4.5")
    p.add_argument("--custom", action="store_true", help="custom mode: the prompt is lyrics; --style, --title needed")
    p.add_argument("--instrumental", action="store_true", help="no vocals")
    p.add_argument("--style", help="style tags (custom mode)")
    p.add_argument("--title", help="song title (custom mode)")
    p.add_argument("--duration", type=_seconds, help="seconds, 30-240")
    p.add_argument("--negative-tags", help="styles to avoid")
    p.add_argument("--vocal-gender", choices=("m", "f"), help="custom mode")
    p.add_argument("--out", metavar="DIR", help="save the songs into DIR")
    p.add_argument("--timeout", type=float, default=1200.0, help="seconds to wait (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the task as JSON")

    p = sub.add_parser("upload", help="upload local images through the files API; print their URLs")
    p.add_argument("files", nargs="+", metavar="FILE|URL")
    p.add_argument("--json", action="store_true", help="print ids, URLs, sizes and expiry as JSON")


def _add_batch_outputs(p: argparse.ArgumentParser) -> None:
    """``evolink batch``'s results file and explicit retries of failed tasks."""
    p.add_argument(
        "--results", metavar="FILE", help="write a JSON line per input (custom_id, task id, status, URLs, files, error)"
    )
    p.add_argument(
        "--retry-failed",
        type=int,
        default=0,
        metavar="N",
        help="resubmit an input whose task failed with a retryable code (service_error...) up to N times, as new"
        " paid tasks within the budget (default: %(default)s)",
    )
    p.add_argument(
        "--retry-delay", type=float, default=30.0, metavar="S", help="seconds before each resubmission (default: 30)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evolink",
        description=f"EvoLink generation (images, videos, music) from the command line. The API key is read from "
        f"{ENV_API_KEY}.",
    )
    parser.add_argument("--base-url", default=None, help="API base URL (default: EVOLINK_BASE_URL or the real API)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def request_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--size", help="aspect ratio, e.g. 16:9 (default: auto)")
        p.add_argument("--quality", help="1K, 2K or 4K (default: 2K)")
        p.add_argument("--model", help="model id (default: gemini-3-pro-image-preview)")

    p = sub.add_parser("generate", help="generate an image for one prompt")
    p.add_argument("prompt")
    request_options(p)
    p.add_argument("--image", action="append", metavar="URL|FILE", help="a reference image (repeatable)")
    p.add_argument("--out", metavar="DIR", help="save the images into DIR")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the task as JSON")

    _add_media_commands(sub)

    p = sub.add_parser("batch", help="generate for every line of a file (prompts, or JSON objects)")
    p.add_argument("file")
    request_options(p)
    p.add_argument("--out", metavar="DIR", help="save the images into DIR")
    p.add_argument("--concurrency", type=int, default=16, help="tasks in flight at once (default: %(default)s)")
    p.add_argument("--journal", metavar="FILE", help="SQLite journal: rerun with it to resume after a crash")
    p.add_argument("--budget", type=float, help="stop submitting before this many credits are committed")
    p.add_argument("--cost-per-task", type=float, metavar="CREDITS", help="a guess of a task's price (see --budget)")
    p.add_argument("--plain", action="store_true", help="every line is a prompt as it is (no JSON objects)")
    p.add_argument("--dry-run", action="store_true", help="check every line, count and price them; send nothing")
    _add_batch_outputs(p)

    p = sub.add_parser("task", help="read or wait for a task by id")
    p.add_argument("action", choices=("get", "wait"))
    p.add_argument("task_id")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the task as JSON")

    p = sub.add_parser("credits", help="show the account's credits")
    p.add_argument("--json", action="store_true")

    from .testing.__main__ import DESCRIPTION, add_arguments

    p = sub.add_parser("simulator", help="run the EvoLink simulator on loopback", description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(simulator_parser=p)

    p = sub.add_parser("demo", help="run a batch on the built-in simulator (no key, no network)")
    p.add_argument("--out", default="evolink-demo-output", help="where to save images (default: %(default)s)")
    p.add_argument("--concurrency", type=int, default=8, help="tasks in flight at once (default: %(default)s)")
    p.add_argument("--seed", type=int, default=7)
    return parser


_COMMANDS = {
    "generate": cmd_generate,
    "video": cmd_video,
    "audio": cmd_audio,
    "upload": cmd_upload,
    "batch": cmd_batch,
    "task": cmd_task,
    "credits": cmd_credits,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``evolink`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "simulator":
            return cmd_simulator(args)
        if getattr(args, "concurrency", 1) < 1:
            raise CLIError("--concurrency must be at least 1")
        return anyio.run(_COMMANDS[args.command], args)
    except CLIError as exc:
        print(f"evolink: error: {exc}", file=sys.stderr)
        return exc.code
    except errors.TaskFailedError as exc:
        print(
            printable(f"evolink: task {exc.task_id} {exc.task.raw_status}: {exc.code or 'no error code'}"),
            file=sys.stderr,
        )
        return EXIT_FAILED
    except (errors.ValidationError, errors.ConfigurationError) as exc:
        print(f"evolink: error: {exc}", file=sys.stderr)
        return EXIT_USAGE  # bad input or settings: nothing was sent
    except errors.EvolinkError as exc:
        print(f"evolink: error: {exc}{_suggested(exc)}{_running_hint()}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"evolink: interrupted{_running_hint()}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        # Task groups wrap errors in exception groups: show the first of ours, in one line.
        ours = _first_known_error(exc)
        if isinstance(ours, CLIError):
            print(f"evolink: error: {ours}", file=sys.stderr)
            return ours.code
        if ours is not None:
            print(f"evolink: error: {ours}{_suggested(ours)}", file=sys.stderr)
            return EXIT_FAILED
        if os.environ.get("EVOLINK_DEBUG"):
            raise
        print(
            printable(f"evolink: unexpected error: {type(exc).__name__}: {exc} (set EVOLINK_DEBUG=1 for details)"),
            file=sys.stderr,
        )
        return EXIT_FAILED


#: The task a one-task command created and has not finished with (see cmd_generate).
_RUNNING: dict[str, str] = {}


#: The tasks an interrupted batch left in flight (see run_batch).
_IN_FLIGHT: list[str] = []


def _suggested(exc: object) -> str:
    """The server's suggestion on an API error (printable, bounded when it was read), as the end of a line."""
    suggestion = getattr(exc, "fallback_suggestion", None)
    return f" — server suggests: {suggestion}" if isinstance(suggestion, str) and suggestion else ""


def _running_hint() -> str:
    task_id = _RUNNING.pop("task_id", None)
    if task_id is not None:
        return f"; task {_shown(task_id)} was created and goes on: `evolink task wait {_shown(task_id)}`"
    ids, _IN_FLIGHT[:] = list(_IN_FLIGHT), []
    if not ids:
        return ""
    listed = "".join(f"\n  {_shown(task_id)}" for task_id in ids)
    tasks = "task was" if len(ids) == 1 else "tasks were"
    return f"; {len(ids)} {tasks} in flight, created and going on (`evolink task wait ID` gets one):{listed}"


def _shown(task_id: str) -> str:
    """A task id as a terminal shows it: quoted when it holds anything but plain printable characters."""
    return task_id if task_id.isascii() and task_id.isprintable() and " " not in task_id else repr(task_id)


def _first_known_error(exc: BaseException) -> errors.EvolinkError | CLIError | None:
    if isinstance(exc, (errors.EvolinkError, CLIError)):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = _first_known_error(inner)
        if found is not None:
            return found
    return None


if __name__ == "__main__":
    sys.exit(main())
