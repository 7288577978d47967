"""The fair queue on its own (order, positions, removal, ``take`` waiting) and the estimates."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.domain import Timings
from backend.estimates import JobTimer, Rates, mean_rates, queue_eta_s
from backend.scheduler import FairQueue, QueueClosed


def fill(queue: FairQueue, users: list[str]) -> list[str]:
    ids = []
    for seq, user in enumerate(users, start=1):
        job_id = f"{user}{sum(1 for u in users[:seq] if u == user)}"
        queue.push(job_id, ("telegram", user), seq, steps=10)
        ids.append(job_id)
    return ids


def drain(queue: FairQueue) -> list[str]:
    out = []
    while (job_id := queue.pop()) is not None:
        out.append(job_id)
    return out


def test_round_robin_across_users_fifo_within() -> None:
    queue = FairQueue()
    fill(queue, ["a", "a", "a", "b", "b", "c"])
    assert queue.job_ids() == ["a1", "b1", "c1", "a2", "b2", "a3"]
    assert [queue.position(j) for j in ("a1", "b1", "c1", "a2", "b2", "a3")] == [1, 2, 3, 4, 5, 6]
    assert drain(queue) == ["a1", "b1", "c1", "a2", "b2", "a3"]


def test_newcomer_goes_before_second_jobs_but_after_the_current_round() -> None:
    queue = FairQueue()
    fill(queue, ["a", "a", "b"])
    assert queue.pop() == "a1"
    queue.push("d1", ("telegram", "d"), 10, steps=10)
    assert queue.job_ids() == ["b1", "d1", "a2"]


def test_remove_and_interrupted_job_first() -> None:
    queue = FairQueue()
    fill(queue, ["a", "b", "a"])
    assert queue.remove("b1") and not queue.remove("b1")
    assert queue.push("z1", ("telegram", "z"), 99, steps=10, first=True) == 1
    assert queue.job_ids() == ["z1", "a1", "a2"]
    assert (len(queue), queue.total_steps, queue.count_for(("telegram", "a"))) == (3, 30, 2)


@given(st.lists(st.sampled_from("abcdef"), max_size=60))
def test_service_order_is_fair(users: list[str]) -> None:
    queue = FairQueue()
    ids = fill(queue, users)
    order = drain(queue)
    assert sorted(order) == sorted(ids)
    per_user: defaultdict[str, list[int]] = defaultdict(list)
    for job_id in order:
        per_user[job_id[0]].append(int(job_id[1:]))
    assert all(nums == sorted(nums) for nums in per_user.values())  # FIFO within a user
    # Round-robin: before anyone's k-th job runs, every user with k jobs has had k - 1 run.
    ran: defaultdict[str, int] = defaultdict(int)
    totals = {u: users.count(u) for u in set(users)}
    for job_id in order:
        user, k = job_id[0], int(job_id[1:])
        assert all(ran[v] >= min(k - 1, totals[v]) for v in totals)
        ran[user] += 1


async def test_take_waits_for_a_push_and_close_releases_waiters() -> None:
    queue = FairQueue()
    waiting = asyncio.create_task(queue.take())
    await asyncio.sleep(0)  # let it start waiting (one loop turn, not a timed wait)
    queue.push("a1", ("telegram", "a"), 1, steps=10)
    assert await asyncio.wait_for(waiting, 5) == "a1"
    closed = asyncio.create_task(queue.take())
    await asyncio.sleep(0)
    queue.close()
    with pytest.raises(QueueClosed):
        await asyncio.wait_for(closed, 5)


def test_eta_from_medians_of_encode_steps_and_decode() -> None:
    timer = JobTimer()
    assert timer.rates() is None
    timer.record(Timings(text_encode_s=1.0, denoise_s=20.0, decode_s=3.0), 10)
    timer.record(Timings(text_encode_s=9.0, denoise_s=90.0, decode_s=9.0), 10)  # a slow outlier
    timer.record(Timings(text_encode_s=1.0, denoise_s=20.0, decode_s=3.0), 10)
    rates = timer.rates()
    assert rates == Rates(encode_s=1.0, s_per_step=2.0, decode_s=3.0)
    assert rates.job_s(10) == 24.0
    assert rates.remaining_s(10, 0) == 24.0  # not started: encode still to come
    assert rates.remaining_s(10, 10) == 3.0  # every step done: the decode is left
    queue = FairQueue()
    fill(queue, ["a", "b", "c"])  # 10 steps each
    assert queue.mean_steps == 10
    assert queue_eta_s(3, 10, 10, running_left_s=5.0, workers=1, rates=None) is None
    # Two workers: (5 s of the running jobs + 2 jobs × 24 s ahead) / 2 workers + own 24 s.
    assert queue_eta_s(3, 10, 10, running_left_s=5.0, workers=2, rates=rates) == 50.5
    assert mean_rates([rates, Rates(3.0, 4.0, 5.0)]) == Rates(2.0, 3.0, 4.0)
