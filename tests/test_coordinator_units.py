"""Units of the coordinator's callback-based answer path (no processes)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from coordinator.service import Coordinator, _Pending
from ordo import errors
from ordo.core.txn import TxnResult
from ordo.v1 import coordinator_pb2 as cpb


def _waiting(position: int) -> tuple[SimpleNamespace, _Pending]:
    loop = asyncio.get_running_loop()
    pending = _Pending("req", [0], future=loop.create_future())
    return SimpleNamespace(pending={position: pending}, background=set()), pending


async def test_a_result_and_the_deadline_in_one_loop_pass_answer_once() -> None:
    """The result arrives in the same event-loop pass in which the deadline
    fires: the submit is answered once, with DEADLINE_EXCEEDED (the timer
    ran first), and the result's late callback answers nothing."""
    loop = asyncio.get_running_loop()
    coordinator, pending = _waiting(5)
    assert pending.future is not None
    answers: list[object] = []
    # Due first, in the same pass as the deadline: the result comes in.
    loop.call_later(0, pending.future.set_result, TxnResult(5, "req", True, None))
    Coordinator._answer_when_applied(
        coordinator, 5, cpb.SubmitResponse(position=5), 0.0, answers.append, loop.time()  # type: ignore[arg-type]
    )
    await asyncio.sleep(0.05)
    assert len(answers) == 1, answers
    assert pending.waiters == 0


async def test_the_result_answers_and_the_timer_is_cancelled() -> None:
    loop = asyncio.get_running_loop()
    coordinator, pending = _waiting(6)
    assert pending.future is not None
    answers: list[object] = []
    Coordinator._answer_when_applied(
        coordinator, 6, cpb.SubmitResponse(position=6), 0.05, answers.append, loop.time()  # type: ignore[arg-type]
    )
    pending.future.set_result(TxnResult(6, "req", True, None))
    await asyncio.sleep(0.1)
    assert len(answers) == 1
    response = answers[0]
    assert isinstance(response, cpb.SubmitResponse)
    assert response.result.position == 6 and response.result.succeeded


async def test_past_the_deadline_the_answer_carries_the_position() -> None:
    loop = asyncio.get_running_loop()
    coordinator, pending = _waiting(7)
    answers: list[object] = []
    Coordinator._answer_when_applied(
        coordinator, 7, cpb.SubmitResponse(position=7), 0.01, answers.append, loop.time()  # type: ignore[arg-type]
    )
    await asyncio.sleep(0.05)
    assert len(answers) == 1
    error = answers[0]
    assert isinstance(error, errors.DeadlineExceeded)
    assert 7 not in coordinator.pending, "nobody waits for it any more"


async def test_a_repeated_submit_that_fails_unexpectedly_is_still_answered() -> None:
    """The slow path (a request id seen before) fails with an error that is
    not an OrdoError: the submit is answered INTERNAL, and the stream still
    ends once the client is done, instead of holding the slot for good."""

    async def fails(request: cpb.SubmitRequest, timeout_s: float) -> cpb.SubmitResponse:
        raise OSError("disk gone")

    coordinator = SimpleNamespace(_submit_fast=lambda request, timeout_s, answer: False,
                                  _submit_again=fails)

    async def requests():  # type: ignore[no-untyped-def]
        yield cpb.SubmitStreamRequest(submits=[cpb.TaggedSubmit(tag=9)])

    replies = []
    stream = Coordinator.SubmitStream(coordinator, requests(), None)  # type: ignore[arg-type]
    async for message in stream:
        replies.extend(message.replies)
    assert [r.tag for r in replies] == [9]
    assert errors.from_status_bytes(replies[0].error).code.name == "INTERNAL"
