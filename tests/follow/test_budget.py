"""The shared edit budget: rate, burst, lanes, priorities, replies first."""

from __future__ import annotations

import asyncio

from bots.follow.budget import RUNNING, EditBudget, Lane, waiting_priority
from bots.follow.queue_watch import next_target
from tests.follow.clocks import ManualClock, settle


def _lane(name: str, interval_s: float = 0.0) -> Lane:
    return Lane(name, interval_s)


async def _grab(budget: EditBudget, lane: Lane, priority: float, log: list[str], name: str) -> None:
    await budget.acquire(lane, priority)
    log.append(name)


async def test_rate_and_burst_bound_the_edits_per_second() -> None:
    clock = ManualClock()
    budget = EditBudget(clock, rate_per_s=2.0, burst=2.0)
    granted: list[str] = []
    tasks = [
        asyncio.create_task(_grab(budget, _lane(f"chat{i}"), RUNNING, granted, str(i)))
        for i in range(7)
    ]
    await settle()
    assert len(granted) == 2  # the burst
    await clock.advance(1.0)
    assert len(granted) == 4
    await clock.advance(1.5)
    assert len(granted) == 7
    assert granted == [str(i) for i in range(7)]  # same priority: first come, first served
    await asyncio.gather(*tasks)
    await budget.close()


async def test_a_lane_waits_its_interval_while_others_go() -> None:
    clock = ManualClock()
    budget = EditBudget(clock, rate_per_s=100.0, burst=100.0)
    granted: list[str] = []
    group = _lane("group", 6.0)
    tasks = [
        asyncio.create_task(_grab(budget, lane, RUNNING, granted, name))
        for name, lane in (("g1", group), ("g2", group), ("p1", _lane("private", 2.0)))
    ]
    await settle()
    assert granted == ["g1", "p1"]
    await clock.advance(5.9)
    assert granted == ["g1", "p1"]
    await clock.advance(0.2)
    assert granted == ["g1", "p1", "g2"]
    await asyncio.gather(*tasks)
    await budget.close()


async def test_running_jobs_go_before_waiting_ones_and_nearer_before_farther() -> None:
    clock = ManualClock()
    budget = EditBudget(clock, rate_per_s=1.0, burst=1.0)
    granted: list[str] = []
    await budget.acquire(_lane("x"), RUNNING)  # empty the bucket
    tasks = [
        asyncio.create_task(_grab(budget, _lane(name), priority, granted, name))
        for name, priority in (
            ("far", waiting_priority(150)),
            ("near", waiting_priority(3)),
            ("running", RUNNING),
        )
    ]
    await settle()
    assert granted == []
    await clock.advance(3.0)
    assert granted == ["running", "near", "far"]
    await asyncio.gather(*tasks)
    await budget.close()


async def test_replies_go_first_and_edits_wait_for_them() -> None:
    clock = ManualClock()
    budget = EditBudget(clock, rate_per_s=1.0, burst=2.0)
    lane = _lane("chat", 1.0)
    for _ in range(4):  # four replies: the bucket is in debt by two, the lane busy for 4 s
        budget.spend(lane)
    granted: list[str] = []
    task = asyncio.create_task(_grab(budget, lane, RUNNING, granted, "edit"))
    await clock.advance(2.9)
    assert granted == []
    await clock.advance(1.2)
    assert granted == ["edit"]
    await task
    await budget.close()


async def test_a_cancelled_waiter_gives_its_turn_up() -> None:
    clock = ManualClock()
    budget = EditBudget(clock, rate_per_s=1.0, burst=1.0)
    await budget.acquire(_lane("x"), RUNNING)
    granted: list[str] = []
    gone = asyncio.create_task(_grab(budget, _lane("a"), RUNNING, granted, "a"))
    kept = asyncio.create_task(_grab(budget, _lane("b"), RUNNING, granted, "b"))
    await settle()
    gone.cancel()
    await clock.advance(1.0)
    assert granted == ["b"]
    assert budget.granted == 2
    await kept
    await budget.close()


def test_waiting_positions_are_shown_coarser_the_further_back() -> None:
    def edits(position: int) -> int:
        count = 0
        while (position := next_target(position)) >= 1:
            count += 1
        return count

    assert [edits(p) for p in (1, 2, 3, 4, 10, 200)] == [0, 1, 2, 1, 3, 5]
    assert sum(edits(p) for p in range(1, 201)) / 200 <= 4.5
    assert next_target(200) == 66 and next_target(3) == 2
