"""The request deadline, swept by one task (``limits.Deadlines``): a request past
it answers 503 within a tick; a cancellation that is not the deadline's stays a
cancellation; a deadline that fires as its handler ends leaves nothing behind."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from loopback import serve_app

from fastpaca_core.http import ENGINE, create_app
from fastpaca_core.http.limits import DEADLINES, Deadlines
from fastpaca_core.http.metrics import TimedStore
from fastpaca_core.jsonutil import loads
from fastpaca_core.settings import Settings
from fastpaca_core.stores.sqlite import SQLiteStore


async def test_a_slow_handler_is_cut_within_a_tick_of_its_deadline(tmp_path: Path) -> None:
    app = create_app(Settings(store=f"sqlite:///{tmp_path / 'd.db'}", request_timeout=0.4))
    finished: list[str] = []

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query["s"]))
        finished.append(request.query["s"])
        return web.json_response({"slept": request.query["s"]})

    app.router.add_get("/v1/slow", slow)
    runner, port = await serve_app(app)
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/v1/slow"
            started = time.monotonic()
            async with session.get(url, params={"s": "5"}) as resp:
                body = loads(await resp.read())
                took = time.monotonic() - started
            assert resp.status == 503 and body["error"] == "deadline_exceeded", body
            assert resp.headers["Retry-After"] == "1"
            tick = app[DEADLINES].tick
            assert 0.4 <= took < 0.4 + tick + 0.5, took  # cut at a sweep, not at the end
            # under the deadline: answered, and the task carries no stray cancellation
            async with session.get(url, params={"s": "0.1"}) as resp:
                assert resp.status == 200
            assert finished == ["0.1"]
    finally:
        await runner.cleanup()


async def test_a_cancellation_of_its_own_is_not_taken_for_the_deadline() -> None:
    deadlines = Deadlines(0.05)
    outcome: list[str] = []

    async def handler() -> None:
        deadline = deadlines.start()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            if deadlines.answers(deadline):  # as the request middleware asks
                outcome.append("deadline")
                return
            outcome.append("cancelled")
            raise
        finally:
            deadlines.end(deadline)

    task = asyncio.create_task(handler())
    await asyncio.sleep(0.1)  # past the deadline, not swept yet
    task.cancel()  # the server shutting down, say
    deadlines.sweep()  # and the deadline as well
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert outcome == ["cancelled"]
    assert task.cancelled()


async def test_a_lifted_deadline_never_fires() -> None:
    deadlines = Deadlines(0.01)

    async def handler() -> str:
        deadline = deadlines.start()
        deadline.when = None  # headers went out (a stream)
        await asyncio.sleep(0.05)
        deadlines.sweep()
        await asyncio.sleep(0)
        assert not deadline.fired
        deadlines.end(deadline)
        return "done"

    assert await asyncio.create_task(handler()) == "done"


async def test_an_ended_deadline_is_forgotten() -> None:
    deadlines = Deadlines(0.01)

    async def handler() -> None:
        deadline = deadlines.start()
        deadlines.end(deadline)
        await asyncio.sleep(0.05)
        deadlines.sweep()
        assert not deadline.fired

    await asyncio.create_task(handler())


def test_the_sweep_is_at_most_a_hundred_times_a_second() -> None:
    assert Deadlines(0.005).tick == 0.01
    assert Deadlines(0.4).tick == 0.04
    assert Deadlines(30).tick == 1.0


async def test_a_lifted_deadline_leaves_the_sweep() -> None:
    deadlines = Deadlines(0.01)

    async def handler() -> None:
        deadline = deadlines.start()
        deadline.when = None  # lifted: a websocket that lives on
        deadlines.sweep()
        assert len(deadlines._open) == 0 and not deadline.fired

    await asyncio.create_task(handler())


async def test_alone_is_a_request_with_no_other_in_progress(tmp_path: Path) -> None:
    """What the SQLite store is told (``Store.use_alone_hint``): ``alone()`` in a
    request's task while no other handler runs; not in another task; and a
    stream whose deadline was lifted still counts until its handler ends."""
    app = create_app(Settings(store=f"sqlite:///{tmp_path / 'u.db'}", request_timeout=0.5))
    release = asyncio.Event()
    seen: list[tuple[int, bool, bool]] = []

    async def held(request: web.Request) -> web.StreamResponse:
        deadlines = request.app[DEADLINES]

        async def elsewhere() -> bool:
            return deadlines.alone()

        under_way, alone = deadlines.under_way(), deadlines.alone()
        seen.append((under_way, alone, await asyncio.create_task(elsewhere())))
        if "stream" in request.query:
            out = web.StreamResponse()
            await out.prepare(request)  # lifts the deadline
            await out.write(b"started")
            await release.wait()
            await out.write_eof()
            return out
        await release.wait()
        return web.json_response({})

    app.router.add_get("/v1/held", held)
    runner, port = await serve_app(app)
    try:
        deadlines = app[DEADLINES]
        store = app[ENGINE].store
        assert isinstance(store, TimedStore) and isinstance(store.inner, SQLiteStore)
        assert store.inner._alone == deadlines.alone  # the server's hint reaches the store
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/v1/held"
            stream = await session.get(url, params={"stream": "1"})
            assert await stream.content.readexactly(7) == b"started"
            await asyncio.sleep(deadlines.tick * 2)  # swept: the lifted deadline is gone
            assert deadlines.under_way() == 1  # the stream's handler still runs
            calls = [asyncio.ensure_future(session.get(url)) for _ in range(2)]
            for _ in range(200):
                if deadlines.under_way() == 3:
                    break
                await asyncio.sleep(0.01)
            assert deadlines.under_way() == 3
            release.set()
            for resp in [stream, *await asyncio.gather(*calls)]:
                assert resp.status == 200
                await resp.read()
                resp.release()
        # the stream alone, then one and two more: never alone once another runs
        assert seen == [(1, True, False), (2, False, False), (3, False, False)]
        assert deadlines.under_way() == 0
    finally:
        await runner.cleanup()


async def test_the_tests_run_on_the_loop_asked_for() -> None:
    """``FASTPACA_TEST_LOOP`` (``scripts/test`` runs the HTTP and proxy tests on
    both loops): the loop these tests run on is the one it names."""
    loop = type(asyncio.get_running_loop())
    if os.environ.get("FASTPACA_TEST_LOOP", "asyncio") == "uvloop":
        assert loop.__module__.startswith("uvloop"), loop
    else:
        assert issubclass(loop, asyncio.BaseEventLoop) and "uvloop" not in loop.__module__, loop
