"""Peak memory of a client given a hostile answer to one status read (docs/reliability.md, "Hostile inputs").

A server in a process of its own answers ``GET /v1/tasks/big`` with SIZE MB of JSON (with its length),
``/endless`` with a chunked body of SIZE MB, ``/bomb`` with gzip that decodes to SIZE MB. For each, a client in a
fresh process reads a fine task, then the hostile one, then a fine one again on the same client, and prints how far
its peak RSS grew and how long the hostile read took::

    python benchmarks/hostile_answers.py --size 512
    PYTHONPATH=/path/to/an/older/checkout python benchmarks/hostile_answers.py --size 512   # to compare
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
import urllib.request

SERVER = """
import sys, zlib
from aiohttp import web
MB = 1024 * 1024
size = int(sys.argv[2]) * MB
packer = zlib.compressobj(9, zlib.DEFLATED, 31)
BOMB = b"".join([packer.compress(b"0" * MB) for _ in range(size // MB)] + [packer.flush()])

async def stream(request, headers, chunk):
    resp = web.StreamResponse(headers=headers)
    await resp.prepare(request)
    try:
        for _ in range(size // len(chunk)):
            await resp.write(chunk)
    except ConnectionError:
        pass
    return resp

async def big(request):
    headers = {"Content-Type": "application/json", "Content-Length": str(size)}
    return await stream(request, headers, b" " * MB)

async def endless(request):
    return await stream(request, {"Content-Type": "application/json"}, b"[" * 65536)

async def bomb(request):
    return web.Response(body=BOMB, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})

async def fine(request):
    return web.json_response({"id": "task-fine", "status": "completed"})

app = web.Application()
for name, handler in (("big", big), ("endless", endless), ("bomb", bomb), ("task-fine", fine)):
    app.router.add_get(f"/v1/tasks/{name}", handler)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""

CLIENT = """
import resource, sys, time, anyio, evolink_async as evo
port, which = sys.argv[1], sys.argv[2]

def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024

async def main():
    options = {"retry": evo.RetryPolicy(max_attempts=1), "timeouts": evo.Timeouts(request=120)}
    async with evo.AsyncClient("sk-measure-0123456789", base_url=f"http://127.0.0.1:{port}", **options) as client:
        await client.get_task("task-fine")
        before, started = rss_mb(), time.monotonic()
        try:
            await client.get_task(which)
            outcome = "no error"
        except evo.EvolinkError as exc:
            outcome = type(exc).__name__
        took = time.monotonic() - started
        grown = rss_mb() - before
        await client.get_task("task-fine")
        print(f"{which:8} {outcome:24} peak RSS +{grown} MB  {took:.2f} s  next request ok")

anyio.run(main)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _wait_until_up(port: int, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit  # the server compresses its bomb before it listens
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/tasks/task-fine", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="MB each hostile answer holds (decoded)")
    args = parser.parse_args()
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(args.size)])
    try:
        _wait_until_up(port)
        for which in ("big", "endless", "bomb"):
            subprocess.run([sys.executable, "-c", CLIENT, str(port), which], check=True)
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
