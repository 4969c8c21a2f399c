"""Pure maths of the poll schedule: when to read a task next, from what its last read said."""

from __future__ import annotations

import random
from collections.abc import Callable

from ._config import PollPolicy
from .models import Task

__all__ = ("estimate_of", "next_delay", "safety_net_delay")


def estimate_of(policy: PollPolicy, task: Task | None) -> float | None:
    """The task's own ``estimated_time``, else the policy's estimate for its kind (None: the default one)."""
    if task is None:
        return None
    if task.estimated_time is not None and task.estimated_time >= 0:
        return task.estimated_time
    kind = task.type or (task.object or "").split(".")[0]
    if kind == "video":
        return policy.video_estimate
    if kind == "audio":
        return policy.audio_estimate
    return None


def next_delay(
    policy: PollPolicy,
    *,
    elapsed: float,
    estimated: float | None,
    progress: int | None,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds until a task should next be read, from what its last read told us.

    - progress between 0 and 100: it predicts the total duration (``elapsed / progress``), so aim
      just past the predicted finish;
    - no progress yet: first look at ``first_check`` of the estimate, then just past the estimate;
    - past the estimate with nothing to go on: back off in proportion to the time already spent.
    Clamped to [min_interval, max_interval] and jittered so tasks submitted together spread out.
    """
    # 0 is a real estimate ("about instant"): the first read then comes at min_interval.
    estimate = estimated if estimated is not None and estimated >= 0 else policy.default_estimate
    spread = 2.0 * rng() - 1.0
    if progress is not None and 0 < progress < 100 and elapsed > 0:
        total = elapsed * 100.0 / progress
        delay = total - elapsed + policy.finish_margin * total
        # Aimed at a predicted finish: jitter only later, since a read before the finish is wasted (and
        # costs a token of the pace that a read of a finished task could have had).
        spread = abs(spread)
    elif elapsed < estimate * policy.first_check:
        delay = estimate * policy.first_check - elapsed
    elif elapsed < estimate:
        delay = estimate - elapsed + policy.finish_margin * estimate
    else:
        delay = elapsed * policy.overdue_factor
    # Never re-read faster than a small fraction of the time the task has already taken.
    floor = max(policy.min_interval, 0.03 * elapsed)
    delay = min(policy.max_interval, max(floor, delay))
    return delay * (1.0 + policy.jitter * spread)


def safety_net_delay(
    policy: PollPolicy, *, elapsed: float, estimated: float | None, rng: Callable[[], float] = random.random
) -> float:
    """Seconds until the next read of a task whose completion a callback should announce.

    Delivery can fail, so such a task is still read — but first well after its estimate
    (``callback_grace`` times the estimate + ``callback_slack``), then sparsely (half the time elapsed, at
    most ``callback_max_interval``).
    """
    estimate = estimated if estimated is not None and estimated > 0 else policy.default_estimate
    first = min(estimate * policy.callback_grace + policy.callback_slack, policy.callback_max_interval)
    delay = (
        first - elapsed if elapsed < first else min(policy.callback_max_interval, max(policy.max_interval, elapsed / 2))
    )
    delay = max(policy.min_interval, delay)
    return delay * (1.0 + policy.jitter * (2.0 * rng() - 1.0))
