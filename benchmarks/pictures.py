"""What the simulator's result pictures cost to draw (issue 10, part 5).

The simulator paints every image result from its prompt (``evolink_async.testing._png.picture_png``: 512
pixels on the long side, a palette PNG) where it used to send a 64-pixel solid square. A benchmark that
downloads thousands of distinct results runs the simulator in its own process, so the drawing is on its event
loop. This measures, per image and for distinct prompts (so nothing is cached), each aspect ratio:

- the picture, drawn and encoded (``picture_png.__wrapped__``, the function under its cache);
- the baseline in the same run: the old 64-pixel solid square (``solid_png`` of the same dimensions' ratio,
  uncached likewise);
- a cached picture (what a second download of the same result costs).

Figures only, no target: exit 0.

    python benchmarks/pictures.py             # 500 prompts per shape
    python benchmarks/pictures.py --images 2000
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from evolink_async.testing import _png

SIZES = ("16:9", "1:1", "9:16", "4:3")


def _per_image(draw: Callable[[str, str], object], prompts: list[str], size: str) -> float:
    """Median over 5 rounds of the time per image, in milliseconds."""
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for prompt in prompts:
            draw(prompt, size)
        rounds.append((time.perf_counter() - started) / len(prompts) * 1e3)
    return statistics.median(rounds)


def _old_square(prompt: str, size: str) -> bytes:
    """The simulator's result before: a solid square 64 pixels on the long side, coloured by the prompt."""
    width, height = _png.dimensions_for(size)
    small = (max(1, width * 64 // _png.LONGEST_SIDE), max(1, height * 64 // _png.LONGEST_SIDE))
    return _png.solid_png.__wrapped__(*small, _png.colour_for(prompt))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500, help="distinct prompts per shape (default: %(default)s)")
    args = parser.parse_args()
    prompts = [f"[duration:0.2] [eta:0] chaos {i}: a lighthouse at dusk, oil painting" for i in range(args.images)]
    print(f"{'size':>6} {'picture ms':>11} {'bytes':>7} {'old square ms':>14} {'cached µs':>10}")
    for size in SIZES:
        picture = _per_image(_png.picture_png.__wrapped__, prompts, size)
        square = _per_image(_old_square, prompts, size)
        _png.picture_png(prompts[0], size)
        cached = _per_image(_png.picture_png, prompts[:1] * len(prompts), size) * 1e3
        size_bytes = statistics.mean(len(_png.picture_png(p, size)) for p in prompts[:50])
        print(f"{size:>6} {picture:>11.2f} {size_bytes:>7.0f} {square:>14.3f} {cached:>10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
