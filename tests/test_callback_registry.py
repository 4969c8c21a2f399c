"""The callback registry decides and calls nothing (the engine acts): its decisions, on a clock the test moves."""

from __future__ import annotations

from evolink_async._callbacks import CallbackRegistry, Decision


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_callback_for_a_waited_task_asks_for_one_confirmation_at_a_time() -> None:
    clock = Clock()
    registry = CallbackRegistry(min_confirm_interval=1.0, clock=clock)
    registry.expect("t1")

    assert registry.decide("t1", waited_on=True, relaying=False) == Decision("accepted", "confirm", 0.0)
    assert registry.announced("t1")
    assert registry.should_read("t1", waited_on=True)
    # A second callback while the first confirmation reads: no second read now, one more after it.
    assert registry.decide("t1", waited_on=True, relaying=False) == Decision("duplicate")
    assert registry.after_read("t1", ok=True, waited_on=True) == 1.0  # the recheck the duplicate asked for
    assert registry.should_read("t1", waited_on=True)
    # "Not yet" although a callback said "done": one follow-up shortly, then the safety net.
    assert registry.after_read("t1", ok=True, waited_on=True) == 1.0
    assert registry.should_read("t1", waited_on=True)
    assert registry.after_read("t1", ok=False, waited_on=True) is None
    registry.confirmation_ended("t1", waited_on=True)
    assert (registry.stats.confirmed, registry.stats.confirm_failures, registry.stats.duplicates) == (2, 1, 1)


def test_a_callback_sooner_than_the_interval_after_a_confirmation_is_deferred_not_a_duplicate() -> None:
    clock = Clock()
    registry = CallbackRegistry(min_confirm_interval=1.0, clock=clock)
    registry.expect("t1")
    registry.decide("t1", waited_on=True, relaying=False)
    registry.should_read("t1", waited_on=True)
    assert registry.after_read("t1", ok=True, waited_on=False) is None  # the read found it settled
    registry.confirmation_ended("t1", waited_on=True)

    clock.now += 0.25
    assert registry.decide("t1", waited_on=True, relaying=False) == Decision("deferred", "confirm", 0.75)
    assert (registry.stats.deferred, registry.stats.duplicates) == (1, 0)


def test_a_callback_nobody_waits_on_is_ignored_or_relayed_and_keeps_no_state() -> None:
    registry = CallbackRegistry()
    assert registry.decide("junk", waited_on=False, relaying=False) == Decision("ignored")
    assert registry.decide("elsewhere", waited_on=False, relaying=True) == Decision("accepted", "relay")
    assert registry.decide("elsewhere", waited_on=False, relaying=True) == Decision("duplicate")
    registry.relayed(confirmed=1, relayed=True)
    registry.confirmation_ended("elsewhere", waited_on=False)
    assert registry.decide("elsewhere", waited_on=False, relaying=True) == Decision("accepted", "relay")
    assert len(registry) == 0
    assert "junk" not in registry
    assert (registry.stats.ignored, registry.stats.relayed, registry.stats.confirmed) == (1, 1, 1)


def test_a_decision_the_engine_cannot_carry_out_answers_closing_and_frees_the_task() -> None:
    registry = CallbackRegistry()
    registry.expect("t1")
    registry.decide("t1", waited_on=True, relaying=False)
    assert registry.abandon("t1") == "closing"
    assert registry.decide("t1", waited_on=True, relaying=False).action == "confirm"  # not stuck "confirming"
