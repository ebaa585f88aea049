"""Units of the server side of multiplexed streams (rpc.Multiplexed), with
requests the test feeds in and answers it controls (no processes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from google.rpc import status_pb2

from ordo import errors, rpc
from ordo.v1 import coordinator_pb2 as cpb


async def _messages(*batches: list[int]) -> AsyncIterator[cpb.SubmitStreamRequest]:
    for tags in batches:
        yield cpb.SubmitStreamRequest(submits=[cpb.TaggedSubmit(tag=t) for t in tags])
        await asyncio.sleep(0)


def _code(reply: cpb.TaggedReply) -> int:
    return status_pb2.Status.FromString(reply.error).code


async def test_every_request_is_answered_once_and_the_stream_ends_after_the_last() -> None:
    loop = asyncio.get_running_loop()
    stream = rpc.Multiplexed(cpb.TaggedReply, cpb.SubmitStreamResponse, 100, "submits")

    def start(item: cpb.TaggedSubmit) -> None:
        if item.tag % 3 == 0:
            stream.answer(item.tag, cpb.SubmitResponse(position=item.tag))  # at once
        elif item.tag % 3 == 1:  # later, after the request stream has ended
            loop.call_later(0.05, stream.answer, item.tag, cpb.SubmitResponse(position=item.tag))
        else:
            raise errors.InvalidArgument("refused alone")

    replies: list[cpb.TaggedReply] = []
    async for message in stream.serve(_messages(list(range(30)), list(range(30, 70))),
                                      lambda m: m.submits, start):
        replies.extend(message.replies)
    tags = [r.tag for r in replies]
    assert sorted(tags) == list(range(70)), "each answered exactly once"
    for reply in replies:
        if reply.tag % 3 == 2:
            assert _code(reply) == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        else:
            assert reply.response.position == reply.tag
    assert stream.open == 0


async def test_past_the_in_flight_limit_only_the_excess_is_refused() -> None:
    stream = rpc.Multiplexed(cpb.TaggedReply, cpb.SubmitStreamResponse, 5, "submits")
    held: list[int] = []

    def start(item: cpb.TaggedSubmit) -> None:
        held.append(item.tag)  # answered only once the requests are all in

    async def requests() -> AsyncIterator[cpb.SubmitStreamRequest]:
        async for message in _messages(list(range(8))):
            yield message
        for tag in held:
            stream.answer(tag, cpb.SubmitResponse(position=tag))

    replies: list[cpb.TaggedReply] = []
    async for message in stream.serve(requests(), lambda m: m.submits, start):
        replies.extend(message.replies)
    refused = sorted(r.tag for r in replies if r.HasField("error"))
    assert held == [0, 1, 2, 3, 4] and refused == [5, 6, 7]
    assert all(_code(r) == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
               for r in replies if r.HasField("error"))
