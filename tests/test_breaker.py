"""The circuit breaker of mita_app.auth.breaker, state by state and transition by transition.

A fake clock drives the pause (`reset_timeout`) so that most tests take no time at all. Only the
probe tests use real time, because the probe runs on a real `threading.Timer`. Threads stand in
for concurrent requests; every wait on another thread is bounded, and no test sleeps a fixed time
where it can poll for the state it expects.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mita_app.auth.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerOpen,
    CircuitBreaker,
    UpstreamFailure,
    retry_after_seconds,
)
from tests.conftest import HandClock

WAIT = 5.0  # the bound on every wait for another thread: far above what any step needs
THRESHOLD = 3
RESET = 10.0  # seconds of the fake clock


class Transitions:
    """An on_transition callback that keeps every (previous, new, details) in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, previous: str, new: str, details: dict[str, Any]) -> None:
        self.calls.append((previous, new, dict(details)))

    @property
    def moves(self) -> list[tuple[str, str]]:
        return [(previous, new) for previous, new, _ in self.calls]


class Probe:
    """A probe that counts its calls and fails (as the upstream would) while `failing` is set."""

    def __init__(self, *, failing: bool = False) -> None:
        self.failing = failing
        self.call_times: list[float] = []

    @property
    def calls(self) -> int:
        return len(self.call_times)

    def __call__(self) -> None:
        self.call_times.append(time.monotonic())
        if self.failing:
            raise UpstreamFailure("still down")


class HeldCall:
    """A call through the breaker on a thread of its own that stays inside the guarded block
    until `finish()` says how it ends: a request whose upstream call is still in flight.

    Once constructed, either `admitted` is true (the block is running) or `rejected` holds the
    BreakerOpen that was raised instead."""

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker
        self.admitted = False
        self.rejected: BreakerOpen | None = None
        self.raised: BaseException | None = None  # what left the `with` block, if anything
        self._settled = threading.Event()  # admitted or rejected
        self._end = threading.Event()
        self._outcome: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="held-call", daemon=True)
        self._thread.start()
        assert self._settled.wait(WAIT), "the call neither entered the block nor was rejected"

    def _run(self) -> None:
        try:
            with self.breaker.attempt():
                self.admitted = True
                self._settled.set()
                self._end.wait(WAIT)
                if self._outcome is not None:
                    raise self._outcome
        except BreakerOpen as error:
            self.rejected = error
        except BaseException as error:  # the outcome finish() asked for, passed through
            self.raised = error
        finally:
            self._settled.set()

    def finish(self, outcome: BaseException | None = None) -> None:
        """End the call: normally (a success) or by raising `outcome`."""
        if not self._end.is_set():
            self._outcome = outcome
            self._end.set()
        self._thread.join(WAIT)
        assert not self._thread.is_alive()


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Poll until `predicate()` holds; False if it still does not after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return predicate()
        time.sleep(0.005)
    return True


def probe_timers(name: str | None = None) -> list[threading.Thread]:
    """The probe timers still alive (of one breaker, or of all)."""
    suffix = f"{name}-probe" if name else "-probe"
    return [
        thread
        for thread in threading.enumerate()
        if isinstance(thread, threading.Timer) and thread.name.endswith(suffix)
    ]


def fail(breaker: CircuitBreaker, message: str = "upstream down") -> None:
    """One call whose upstream fails."""
    with pytest.raises(UpstreamFailure), breaker.attempt():
        raise UpstreamFailure(message)


def succeed(breaker: CircuitBreaker) -> None:
    """One call whose upstream answers."""
    ran = []
    with breaker.attempt():
        ran.append(True)
    assert ran == [True]


def rejected(breaker: CircuitBreaker) -> BreakerOpen:
    """Attempt a call that must fail fast: return its BreakerOpen, after checking that the
    guarded block did not run."""
    ran = []
    with pytest.raises(BreakerOpen) as caught, breaker.attempt():
        ran.append(True)
    assert ran == []
    return caught.value


def open_breaker(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.failure_threshold):
        fail(breaker)
    assert breaker.state == OPEN


@pytest.fixture(autouse=True)
def no_probe_left_running() -> Iterator[None]:
    """Whatever a test did, no probe timer outlives it: cancel pending ones and wait for the
    running ones (a failing probe schedules the next one, hence the loop)."""
    yield
    deadline = time.monotonic() + WAIT
    while timers := probe_timers():
        for timer in timers:
            timer.cancel()  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, f"probe timers still running: {timers}"
        time.sleep(0.005)


@pytest.fixture
def clock() -> HandClock:
    return HandClock()


@pytest.fixture
def transitions() -> Transitions:
    return Transitions()


@pytest.fixture
def breaker(clock: HandClock, transitions: Transitions) -> CircuitBreaker:
    return CircuitBreaker(
        "upstream",
        failure_threshold=THRESHOLD,
        reset_timeout=RESET,
        clock=clock,
        on_transition=transitions,
    )


@pytest.fixture
def hold() -> Iterator[Callable[[CircuitBreaker], HeldCall]]:
    """Start held calls; any the test left in flight end (as successes) at teardown."""
    calls: list[HeldCall] = []

    def start(breaker: CircuitBreaker) -> HeldCall:
        call = HeldCall(breaker)
        calls.append(call)
        return call

    yield start
    for call in calls:
        call.finish()


# --- closed ---------------------------------------------------------------------------------------


def test_closed_stays_closed_below_the_threshold(breaker: CircuitBreaker) -> None:
    for _ in range(THRESHOLD - 1):
        fail(breaker)

    assert breaker.state == CLOSED
    assert breaker.snapshot()["consecutive_failures"] == THRESHOLD - 1
    succeed(breaker)  # calls still go through


def test_failures_must_be_consecutive_a_success_resets_the_count(
    breaker: CircuitBreaker,
) -> None:
    for _ in range(THRESHOLD - 1):
        fail(breaker)
    succeed(breaker)
    assert breaker.snapshot()["consecutive_failures"] == 0

    for _ in range(THRESHOLD - 1):
        fail(breaker)
    assert breaker.state == CLOSED  # 2 + 2 failures, but never 3 in a row

    fail(breaker)
    assert breaker.state == OPEN


def test_an_unrelated_exception_while_closed_is_neither_success_nor_failure(
    breaker: CircuitBreaker,
) -> None:
    for _ in range(THRESHOLD - 1):
        fail(breaker)
    with pytest.raises(ValueError, match="our own bug"), breaker.attempt():
        raise ValueError("our own bug")

    assert breaker.snapshot()["consecutive_failures"] == THRESHOLD - 1  # not reset, not counted
    fail(breaker)
    assert breaker.state == OPEN


def test_the_blocks_own_exceptions_propagate_unchanged(breaker: CircuitBreaker) -> None:
    failure = UpstreamFailure("HTTP 503")
    with pytest.raises(UpstreamFailure) as caught, breaker.attempt():
        raise failure
    assert caught.value is failure

    other = KeyError("x")
    with pytest.raises(KeyError) as caught_other, breaker.attempt():
        raise other
    assert caught_other.value is other


def test_without_a_probe_opening_starts_no_timer(breaker: CircuitBreaker) -> None:
    open_breaker(breaker)
    assert probe_timers(breaker.name) == []


# --- open -----------------------------------------------------------------------------------------


def test_opens_at_the_threshold_and_fails_fast_without_running_the_block(
    breaker: CircuitBreaker,
) -> None:
    for _ in range(THRESHOLD):
        fail(breaker)
    assert breaker.state == OPEN

    for _ in range(5):  # every call fails fast, none is a trial, the state does not move
        error = rejected(breaker)
        assert error.retry_after == RESET
    assert breaker.state == OPEN
    assert breaker.snapshot()["consecutive_failures"] == THRESHOLD


def test_retry_after_counts_down_with_the_clock(breaker: CircuitBreaker, clock: HandClock) -> None:
    open_breaker(breaker)
    assert rejected(breaker).retry_after == RESET

    clock.advance(2.75)
    error = rejected(breaker)
    assert error.retry_after == RESET - 2.75
    assert retry_after_seconds(error) == 8  # 7.25 s rounds up

    clock.advance(7.0)
    error = rejected(breaker)
    assert error.retry_after == 0.25
    assert retry_after_seconds(error) == 1
    assert breaker.state == OPEN  # still open a quarter of a second before the end


@pytest.mark.parametrize(
    ("retry_after", "seconds"),
    [(0.0, 1), (0.001, 1), (1.0, 1), (1.5, 2), (7.25, 8), (10.0, 10)],
)
def test_retry_after_seconds_is_a_whole_number_of_at_least_one(
    retry_after: float, seconds: int
) -> None:
    assert retry_after_seconds(BreakerOpen(retry_after)) == seconds


# --- half-open ------------------------------------------------------------------------------------


def test_after_the_pause_the_next_attempt_is_the_trial_and_others_fail_fast(
    breaker: CircuitBreaker, clock: HandClock, hold: Callable[[CircuitBreaker], HeldCall]
) -> None:
    open_breaker(breaker)
    clock.advance(RESET)

    trial = hold(breaker)  # its upstream call is in flight
    assert trial.admitted
    assert breaker.state == HALF_OPEN

    others = [hold(breaker) for _ in range(4)]  # concurrent requests on their own threads
    for other in others:
        assert not other.admitted
        assert other.rejected is not None
        assert other.rejected.retry_after == 1.0  # half-open: "try again in a second"
    assert rejected(breaker).retry_after == 1.0

    trial.finish()
    assert trial.raised is None
    assert breaker.state == CLOSED
    succeed(breaker)


def test_of_many_simultaneous_attempts_after_the_pause_exactly_one_is_the_trial(
    breaker: CircuitBreaker, clock: HandClock
) -> None:
    open_breaker(breaker)
    clock.advance(RESET)
    workers = 8
    start = threading.Barrier(workers)
    release = threading.Event()
    admitted: list[int] = []
    rejections: list[int] = []

    def request(number: int) -> None:
        start.wait(WAIT)
        try:
            with breaker.attempt():
                admitted.append(number)
                release.wait(WAIT)
        except BreakerOpen:
            rejections.append(number)

    threads = [threading.Thread(target=request, args=(n,), daemon=True) for n in range(workers)]
    for thread in threads:
        thread.start()
    try:
        assert wait_until(lambda: len(admitted) + len(rejections) == workers)
        assert len(admitted) == 1
    finally:
        release.set()
        for thread in threads:
            thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads)
    assert breaker.state == CLOSED


def test_trial_success_closes(
    breaker: CircuitBreaker, clock: HandClock, transitions: Transitions
) -> None:
    open_breaker(breaker)
    clock.advance(RESET)

    succeed(breaker)

    assert breaker.state == CLOSED
    assert breaker.snapshot()["consecutive_failures"] == 0
    assert transitions.moves[-2:] == [(OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    # closed again means a fresh count: it takes a full threshold to open again
    for _ in range(THRESHOLD - 1):
        fail(breaker)
    assert breaker.state == CLOSED


def test_trial_failure_reopens_for_a_full_new_period(
    breaker: CircuitBreaker, clock: HandClock, transitions: Transitions
) -> None:
    open_breaker(breaker)
    clock.advance(RESET + 5)  # the first request after the pause comes late

    fail(breaker, "still down")  # a single failure is enough in half-open

    assert breaker.state == OPEN
    assert transitions.moves[-2:] == [(OPEN, HALF_OPEN), (HALF_OPEN, OPEN)]
    # the new period counts from the trial's failure, not from the first opening
    assert rejected(breaker).retry_after == RESET
    clock.advance(RESET - 0.5)
    assert rejected(breaker).retry_after == 0.5
    clock.advance(0.5)
    succeed(breaker)
    assert breaker.state == CLOSED


def test_an_unrelated_exception_in_the_trial_releases_it_without_a_verdict(
    breaker: CircuitBreaker, clock: HandClock, transitions: Transitions
) -> None:
    open_breaker(breaker)
    clock.advance(RESET)
    before = breaker.snapshot()

    with pytest.raises(ValueError, match="our own bug"), breaker.attempt():
        raise ValueError("our own bug")

    assert breaker.state == HALF_OPEN  # neither closed nor reopened
    assert breaker.snapshot()["consecutive_failures"] == before["consecutive_failures"]
    assert breaker.snapshot()["last_error"] == before["last_error"]
    assert transitions.moves[-1] == (OPEN, HALF_OPEN)
    # released: the next attempt is admitted as the trial, and its success closes
    succeed(breaker)
    assert breaker.state == CLOSED


def test_on_transition_receives_previous_new_and_details_in_order(
    breaker: CircuitBreaker, clock: HandClock, transitions: Transitions
) -> None:
    for n in range(THRESHOLD):
        fail(breaker, f"boom {n}")
    clock.advance(RESET)
    fail(breaker, "boom again")
    clock.advance(RESET)
    succeed(breaker)

    first, again = "UpstreamFailure: boom 2", "UpstreamFailure: boom again"
    assert transitions.calls == [
        (CLOSED, OPEN, {"consecutive_failures": 3, "last_error": first}),
        (OPEN, HALF_OPEN, {"consecutive_failures": 3, "last_error": first}),
        (HALF_OPEN, OPEN, {"consecutive_failures": 4, "last_error": again}),
        (OPEN, HALF_OPEN, {"consecutive_failures": 4, "last_error": again}),
        (HALF_OPEN, CLOSED, {"consecutive_failures": 0, "last_error": again}),
    ]


def test_snapshot_values(breaker: CircuitBreaker, clock: HandClock) -> None:
    assert breaker.snapshot() == {
        "state": CLOSED,
        "consecutive_failures": 0,
        "last_error": None,
        "retry_in": 0.0,
    }

    fail(breaker, "HTTP 500")
    assert breaker.snapshot() == {
        "state": CLOSED,
        "consecutive_failures": 1,
        "last_error": "UpstreamFailure: HTTP 500",
        "retry_in": 0.0,
    }

    fail(breaker, "HTTP 502")
    fail(breaker, "x" * 500)
    clock.advance(2.5)
    snapshot = breaker.snapshot()
    assert snapshot["state"] == OPEN
    assert snapshot["consecutive_failures"] == THRESHOLD
    assert snapshot["last_error"] == ("UpstreamFailure: " + "x" * 500)[:200]  # capped
    assert snapshot["retry_in"] == 7.5

    clock.advance(7.5)
    assert breaker.snapshot()["retry_in"] == 0.0  # pause over, but no attempt yet: still open
    assert breaker.snapshot()["state"] == OPEN

    with breaker.attempt():
        assert breaker.snapshot()["state"] == HALF_OPEN
        assert breaker.snapshot()["retry_in"] == 1.0
    # closed again; the last error stays on record
    assert breaker.snapshot() == {
        "state": CLOSED,
        "consecutive_failures": 0,
        "last_error": ("UpstreamFailure: " + "x" * 500)[:200],
        "retry_in": 0.0,
    }


# --- the probe: recovery without traffic ----------------------------------------------------------


def test_a_succeeding_probe_closes_the_breaker_with_no_traffic_at_all() -> None:
    probe = Probe()
    transitions = Transitions()
    breaker = CircuitBreaker(
        "heals",
        failure_threshold=1,
        reset_timeout=0.2,
        on_transition=transitions,
        probe=probe,
    )
    opened = time.monotonic()
    fail(breaker)

    assert wait_until(lambda: breaker.state == CLOSED)  # no request made it close
    assert probe.calls == 1
    assert probe.call_times[0] - opened >= 0.2  # not before the pause is over
    assert transitions.moves == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert wait_until(lambda: probe_timers("heals") == [])  # closed: nothing else scheduled


def test_a_failing_probe_reopens_and_schedules_another() -> None:
    reset = 0.1
    probe = Probe(failing=True)
    transitions = Transitions()
    breaker = CircuitBreaker(
        "stays-down",
        failure_threshold=1,
        reset_timeout=reset,
        on_transition=transitions,
        probe=probe,
    )
    fail(breaker)

    assert wait_until(lambda: probe.calls >= 3)  # each failed probe scheduled the next one
    assert breaker.state in (OPEN, HALF_OPEN)  # HALF_OPEN while a probe is running
    probe.failing = False  # the upstream heals
    assert wait_until(lambda: breaker.state == CLOSED)

    failed = probe.calls - 1
    assert failed >= 3
    assert transitions.moves == (
        [(CLOSED, OPEN)]
        + [(OPEN, HALF_OPEN), (HALF_OPEN, OPEN)] * failed
        + [(OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    )
    gaps = [later - earlier for earlier, later in itertools.pairwise(probe.call_times)]
    assert min(gaps) >= reset - 0.001  # a full pause between two probes
    assert breaker.snapshot()["last_error"] == "UpstreamFailure: still down"


def test_a_probe_does_nothing_if_a_request_took_the_trial(
    clock: HandClock, hold: Callable[[CircuitBreaker], HeldCall]
) -> None:
    probe = Probe()
    breaker = CircuitBreaker(
        "yields",
        failure_threshold=1,
        reset_timeout=0.5,  # real seconds for the timer; the fake clock jumps ahead at once
        clock=clock,
        probe=probe,
    )
    fail(breaker)  # opens; the probe timer starts
    clock.advance(0.5)  # by the breaker's clock the pause is over already
    trial = hold(breaker)  # a request takes the trial; its upstream call is in flight
    assert trial.admitted

    assert wait_until(lambda: probe_timers("yields") == [])  # the timer fired and gave up
    assert probe.calls == 0
    assert breaker.state == HALF_OPEN

    trial.finish()
    assert breaker.state == CLOSED
    assert probe.calls == 0


# --- bugs -----------------------------------------------------------------------------------------


def test_a_call_admitted_before_the_opening_does_not_free_the_half_open_trial(
    breaker: CircuitBreaker, clock: HandClock, hold: Callable[[CircuitBreaker], HeldCall]
) -> None:
    straggler = hold(breaker)  # admitted while closed; its upstream call is slow
    open_breaker(breaker)  # meanwhile other calls fail
    clock.advance(RESET)
    trial = hold(breaker)
    assert trial.admitted
    assert breaker.state == HALF_OPEN

    straggler.finish(ValueError("client went away"))  # no verdict on the upstream

    second = hold(breaker)
    assert not second.admitted, "a second trial call runs while the first is in flight"


def test_a_probe_does_not_call_after_a_request_trial_closed_the_breaker(
    clock: HandClock,
) -> None:
    probe = Probe()
    breaker = CircuitBreaker(
        "closed-early", failure_threshold=1, reset_timeout=0.5, clock=clock, probe=probe
    )
    fail(breaker)
    clock.advance(0.5)  # (a binary fraction: 1000 + 0.3 - 1000 < 0.3 in floating point)
    succeed(breaker)  # a request was the trial, and it closed the breaker
    assert breaker.state == CLOSED

    assert wait_until(lambda: probe_timers("closed-early") == [])
    assert probe.calls == 0, "the probe called the upstream after the breaker had closed"


def test_a_transition_callback_may_look_at_the_breaker_and_its_failure_is_not_the_calls(
    clock: HandClock,
) -> None:
    seen: list[str] = []

    def look_then_fail(previous: str, new: str, details: dict[str, Any]) -> None:
        seen.append(breaker.snapshot()["state"])  # would deadlock if called under the lock
        raise RuntimeError("reporting is broken")

    breaker = CircuitBreaker(
        "upstream",
        failure_threshold=1,
        reset_timeout=RESET,
        clock=clock,
        on_transition=look_then_fail,
    )
    fail(breaker)
    clock.advance(RESET)
    with breaker.attempt():  # the trial succeeds, whatever the callback does
        pass

    assert seen == [OPEN, HALF_OPEN, CLOSED]
    assert breaker.state == CLOSED


def test_a_probe_that_dies_of_an_unrelated_error_is_tried_again(caplog) -> None:
    calls: list[float] = []

    def buggy_then_fine() -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise ValueError("a bug in the probe")  # neither success nor failure

    breaker = CircuitBreaker(
        "upstream", failure_threshold=1, reset_timeout=0.2, probe=buggy_then_fine
    )
    fail(breaker)

    # No traffic at all: only the probe can close it, and its first try has no verdict.
    assert wait_until(lambda: breaker.state == CLOSED), breaker.snapshot()
    assert len(calls) == 2
    assert "probe failed unexpectedly" in caplog.text
