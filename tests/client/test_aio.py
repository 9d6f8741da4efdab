"""The asyncio client: same semantics, pipelined from many tasks."""

from __future__ import annotations

import asyncio
import socket

import pytest

import tmem
from tmem.client import aio


def test_async_client_has_the_engine_semantics(address: str,
                                               pages: list[bytes]) -> None:
    async def main() -> None:
        async with await aio.connect(address, name="a") as client:
            cache = await client.new_pool()
            swap = await client.new_pool(persistent=True)
            assert await swap.put(1, 1, pages[0])
            assert await swap.get(1, 1) == pages[0]
            assert await cache.put(1, 1, pages[1])
            assert await cache.get(1, 1) == pages[1]
            assert await cache.get(1, 1) is None
            await swap.put_many([(2, i, pages[i]) for i in range(50)])
            assert await swap.get_many([(2, i) for i in range(50)]) == \
                pages[:50]
            assert await swap.flush_object(2) == 50
            assert [p.pool_id for p in await client.pools()] == [0, 1]
            assert (await client.stats()).persistent_pages == 1
            with pytest.raises(tmem.NoSuchPool):
                await client.pool(7)

    asyncio.run(main())


def test_many_tasks_pipeline_on_one_connection(address: str,
                                               pages: list[bytes]) -> None:
    async def main() -> None:
        client = await aio.connect(address, name="pipe")
        swap = await client.new_pool(persistent=True)

        async def task(n: int) -> None:
            for i in range(20):
                assert await swap.put(n, i, pages[(n + i) % len(pages)])
            for i in range(20):
                assert await swap.get(n, i) == pages[(n + i) % len(pages)]

        await asyncio.gather(*(task(n) for n in range(10)))
        await client.close()

    asyncio.run(main())


def test_async_client_resumes_after_a_break(address: str,
                                            pages: list[bytes]) -> None:
    async def main() -> None:
        client = await aio.connect(address, name="r")
        swap = await client.new_pool(persistent=True)
        await swap.put(1, 1, pages[0])
        writer = client._wire._writer
        assert writer is not None
        writer.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
        reader = client._wire._reader_task
        assert reader is not None
        await asyncio.wait_for(reader, 5)  # the client saw the break
        assert await swap.get(1, 1) == pages[0]
        await client.close()

    asyncio.run(main())


def test_async_errors_are_the_same_classes(address: str) -> None:
    async def main() -> None:
        client = await aio.connect(address, name="e")
        with pytest.raises(tmem.InvalidArgument):
            await client.new_pool(shared=True)
        control = client.control
        with pytest.raises(tmem.NoSuchClient):
            await control.freeze("nobody")
        await client.close()

    asyncio.run(main())


def test_an_async_client_takes_over_a_session_by_its_token(
        address: str, pages: list[bytes]) -> None:
    owner = tmem.connect(address, name="handed")
    owner.new_pool(persistent=True).put(1, 1, pages[0])
    token = owner.resume_token
    assert token is not None

    async def main() -> None:
        heir = await aio.connect(address, name="handed", resume=token)
        assert heir.resume_token == token
        assert await (await heir.pool(0)).get(1, 1) == pages[0]
        await heir.close()

    asyncio.run(main())


@pytest.mark.parametrize("token", ["zz", "abcd", "00" * 16, b"short"])
def test_a_malformed_resume_token_is_refused_before_dialling(
        token: str | bytes) -> None:
    with pytest.raises(tmem.InvalidArgument, match="resume token"):
        tmem.connect("unix:/nonexistent/tmem.sock", resume=token)

    async def main() -> None:
        with pytest.raises(tmem.InvalidArgument, match="resume token"):
            await aio.connect("unix:/nonexistent/tmem.sock", resume=token)

    asyncio.run(main())
