"""Human verdicts: the broker lists pending reviews and resolves them on submit."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from rrr_agent._types import ModelOutput, Task
from rrr_agent.verifiers import build_verifier
from rrr_agent.verifiers.human import HumanReviewTimeout, HumanVerdicts, set_broker


@pytest.fixture
def broker() -> Iterator[HumanVerdicts]:
    fresh = HumanVerdicts()
    previous = set_broker(fresh)
    yield fresh
    set_broker(previous)


TASK = Task.from_prompt("Write a polite reply.", {"type": "human", "question": "Polite?"})


async def _wait_pending(broker: HumanVerdicts, n: int = 1) -> None:
    for _ in range(200):
        if len(broker.pending()) >= n:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("review never became pending")


async def test_submit_resolves_the_waiting_verify(broker: HumanVerdicts) -> None:
    verifier = build_verifier(TASK.verifier)
    job = asyncio.create_task(verifier.verify(ModelOutput(text="Thanks!"), TASK))
    await _wait_pending(broker)
    (review,) = broker.pending()
    assert review.question == "Polite?"
    assert review.output.text == "Thanks!"
    assert review.task.id == TASK.id
    broker.submit(review.key, False, "Too curt.")
    verdict = await job
    assert not verdict.passed
    assert verdict.feedback == "Too curt."
    assert broker.pending() == []
    with pytest.raises(KeyError):
        broker.submit(review.key, True)


async def test_submit_from_another_thread_and_ordering(broker: HumanVerdicts) -> None:
    verifier = build_verifier(TASK.verifier)
    first = asyncio.create_task(verifier.verify(ModelOutput(text="a"), TASK))
    await _wait_pending(broker, 1)
    second = asyncio.create_task(verifier.verify(ModelOutput(text="b"), TASK))
    await _wait_pending(broker, 2)
    keys = [r.key for r in broker.pending()]
    assert [r.output.text for r in broker.pending()] == ["a", "b"]
    worker = threading.Thread(target=broker.submit, args=(keys[1], True))
    worker.start()
    worker.join()
    assert (await second).passed
    assert not first.done()
    broker.submit(keys[0], True)
    assert (await first).passed


async def test_timeout_raises_a_typed_error(broker: HumanVerdicts) -> None:
    verifier = build_verifier({"type": "human", "timeout_s": 0.05})
    with pytest.raises(HumanReviewTimeout):
        await verifier.verify(ModelOutput(text="x"), TASK)
    assert broker.pending() == []


async def test_cancel_withdraws_the_review(broker: HumanVerdicts) -> None:
    verifier = build_verifier(TASK.verifier)
    job = asyncio.create_task(verifier.verify(ModelOutput(text="x"), TASK))
    await _wait_pending(broker)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert broker.pending() == []
