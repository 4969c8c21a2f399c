"""Run the EvoLink simulator standalone: ``python -m evolink_async.testing --port 8080``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import ssl
import sys
from collections.abc import Sequence

from ._models import directive_plan
from ._server import FakeEvolink

DESCRIPTION = (
    "Run the EvoLink simulator until Ctrl-C. Prompts may script outcomes with directives: "
    "[fail], [fail:CODE], [cancel], [never], [duration:S], [eta:S], [minimal], [noerror], [results:N], "
    "[status:RAW]."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evolink_async.testing", description=DESCRIPTION)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulator's options (shared with ``evolink simulator``)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8080, help="port to bind, 0 for any free one (default: %(default)s)"
    )
    parser.add_argument("--api-key", default="sk-evo-simulator-key", help="the key clients must send")
    parser.add_argument(
        "--duration", type=float, default=3.0, help="seconds a task runs without [duration:S] (default: %(default)s)"
    )
    parser.add_argument("--no-batch", action="store_true", help="answer 404 on POST /v1/tasks/batch")
    parser.add_argument("--credits", type=float, default=1000.0, help="initial balance (default: %(default)s)")
    parser.add_argument("--error-style", choices=("string", "int"), default="string", help="error envelope code style")
    parser.add_argument("--public-base-url", default=None, help="base URL used in result links")
    parser.add_argument(
        "--allow-local-callbacks",
        action="store_true",
        help="accept callback_url on loopback/private hosts (still HTTPS only; the real API rejects them)",
    )
    parser.add_argument(
        "--callback-cafile",
        default=None,
        metavar="PATH",
        help="PEM file of CA certificates to verify callback receivers (default: the system's trust store)",
    )


async def _serve(args: argparse.Namespace, callback_ssl: ssl.SSLContext | None) -> None:
    fake = FakeEvolink(
        api_key=args.api_key,
        host=args.host,
        port=args.port,
        plan=functools.partial(directive_plan, default_duration=args.duration),
        batch_endpoint=not args.no_batch,
        initial_credits=args.credits,
        error_style=args.error_style,
        public_base_url=args.public_base_url,
        allow_local_callbacks=args.allow_local_callbacks,
        callback_ssl=callback_ssl,
    )
    async with fake:
        print(f"EvoLink simulator running at {fake.base_url}", flush=True)
        print(f"API key: {fake.api_key}", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    return run(parser.parse_args(argv), parser)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Serve until Ctrl-C with parsed options (see :func:`add_arguments`); returns the exit code."""
    if args.duration < 0:
        parser.error("--duration must be >= 0")
    callback_ssl = None
    if args.callback_cafile is not None:
        try:
            callback_ssl = ssl.create_default_context(cafile=args.callback_cafile)
        except (OSError, ssl.SSLError) as exc:
            parser.error(f"--callback-cafile: {exc}")
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(args, callback_ssl))
    except OSError as exc:  # e.g. the port is taken: one line, not a traceback
        print(f"simulator: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
