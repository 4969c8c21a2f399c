"""A faithful EvoLink simulator for tests and demos: a real aiohttp.web server on loopback.

It speaks EvoLink's task API (create, read, batch read, list, credits, result files), moves tasks
pending -> processing -> completed / failed / cancelled in real time, honours ``Idempotency-Key``,
charges and refunds credits, delivers ``callback_url`` callbacks, injects faults on demand and counts
everything it sees::

    from evolink_async.testing import FakeEvolink, Fault, TaskPlan

    async with FakeEvolink(plan=lambda body: TaskPlan(duration=0.2)) as fake:
        fake.inject(Fault(route="create", kind="drop_after_create"))
        ...  # point a client at fake.base_url with fake.api_key
        assert fake.stats.creates == 1

Without a ``plan``, prompts script their own fate (:func:`directive_plan`): ``"a cat [fail:service_error]"``,
``"[duration:3] [eta:10]"``, ``"[never]"``... Run it standalone with ``python -m evolink_async.testing``.

Callbacks behave as EvoLink documents them: when a task created with a ``callback_url`` ends, the
simulator POSTs the task's JSON there at the finish time (no signature, 10 s timeout, any 2xx is success,
retries after 1, 2 and 4 s; all scalable for tests). The real API only accepts public HTTPS receivers, so
local tests pass ``allow_local_callbacks=True`` and a ``callback_ssl`` context trusting their test CA::

    async with FakeEvolink(allow_local_callbacks=True, callback_ssl=ctx, callback_retry_delays=(0.01,) * 3) as fake:
        ...  # create with {"callback_url": "https://127.0.0.1:8443/hook", ...}
        await fake.wait_callbacks_idle()
        assert fake.stats.callbacks_delivered == 1  # details per attempt: fake.stats.callback_log

``fake.lose_callbacks = True`` drops every delivery (to test a polling fallback);
``Fault(route="callback", kind="drop")`` fails single attempts, which are then retried.
"""

from ._models import CallbackRecord, Fault, RequestRecord, SimStats, SimTask, TaskPlan, directive_plan
from ._server import FakeEvolink

__all__ = (
    "CallbackRecord",
    "FakeEvolink",
    "Fault",
    "RequestRecord",
    "SimStats",
    "SimTask",
    "TaskPlan",
    "directive_plan",
)
