"""A faithful EvoLink simulator for tests and demos: a real aiohttp.web server on loopback.

It speaks EvoLink's task API (create, read, batch read, list, credits, result files), moves tasks
pending -> processing -> completed / failed / cancelled in real time, honours ``Idempotency-Key``,
charges and refunds credits, injects faults on demand and counts everything it sees::

    from evolink_async.testing import FakeEvolink, Fault, TaskPlan

    async with FakeEvolink(plan=lambda body: TaskPlan(duration=0.2)) as fake:
        fake.inject(Fault(route="create", kind="drop_after_create"))
        ...  # point a client at fake.base_url with fake.api_key
        assert fake.stats.creates == 1

Without a ``plan``, prompts script their own fate (:func:`directive_plan`): ``"a cat [fail:service_error]"``,
``"[duration:3] [eta:10]"``, ``"[never]"``... Run it standalone with ``python -m evolink_async.testing``.
"""

from ._models import Fault, RequestRecord, SimStats, SimTask, TaskPlan, directive_plan
from ._server import FakeEvolink

__all__ = ("FakeEvolink", "Fault", "RequestRecord", "SimStats", "SimTask", "TaskPlan", "directive_plan")
