"""Leases: one summarisation per context, across processes; a dead holder's lease expires."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap

import pytest

from fastpaca_core import Engine, open_store
from fastpaca_proxy.fake_upstream import FakeUpstream, Reply

from .support import SUMMARY_TEXT, policy, turn


async def test_take_renew_refuse_expire_drop(engine: Engine) -> None:
    assert await engine.take_lease("c", "a", 30)
    assert await engine.take_lease("c", "a", 30)  # the holder renews
    assert not await engine.take_lease("c", "b", 30)
    await engine.drop_lease("c", "b")  # not the holder: nothing happens
    assert not await engine.take_lease("c", "b", 30)
    assert await engine.take_lease("d", "b", 30)  # one lease per context
    await engine.drop_lease("c", "a")
    assert await engine.take_lease("c", "b", 0.3)
    assert not await engine.take_lease("c", "a", 30)
    await asyncio.sleep(0.5)
    assert await engine.take_lease("c", "a", 30)  # expired: taken over
    assert not await engine.take_lease("c", "b", 30)


async def test_concurrent_takers_get_one_lease(engine: Engine) -> None:
    taken = await asyncio.gather(*(engine.take_lease("c", f"h{i}", 30) for i in range(12)))
    assert sum(taken) == 1


WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from fastpaca_core import Engine, open_store
    from fastpaca_core.summarizer import Summarizer, SummarizerOptions
    from fastpaca_core.summary_llm import SDKSummaryModel

    async def main(url, base, cid, ttl, wait):
        async with open_store(url) as store:
            engine = Engine(store)
            model = SDKSummaryModel(
                openai_base_url=base + "/v1", anthropic_base_url=base,
                openai_api_key="sk-test", anthropic_api_key="sk-test",
            )
            options = SummarizerOptions(lease_ttl=ttl, retry_initial=0.05, workers=1)
            async with Summarizer(engine, model, options) as summarizer:
                await model.prepare("openai")
                print("started", flush=True)
                await asyncio.to_thread(sys.stdin.readline)  # "go"
                summarizer.notify(cid)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + wait
                while loop.time() < deadline:
                    done = (await engine.list_summaries(cid)).summaries
                    if done and not summarizer.busy:
                        break
                    await asyncio.sleep(0.05)
                print("result", summarizer.summaries, summarizer.contended, flush=True)

    asyncio.run(main(*sys.argv[1:4], float(sys.argv[4]), float(sys.argv[5])))
    """
)


async def _spawn(
    url: str, fake: FakeUpstream, ttl: float, wait: float
) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WORKER,
        url,
        fake.base_url,
        "shared",
        str(ttl),
        str(wait),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert line.startswith(b"started"), line
    return proc


def _go(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdin is not None
    proc.stdin.write(b"go\n")


async def _result(proc: asyncio.subprocess.Process) -> tuple[int, int]:
    assert proc.stdout is not None and proc.stderr is not None
    out, err = await asyncio.wait_for(asyncio.gather(proc.stdout.read(), proc.stderr.read()), 90)
    await proc.wait()
    assert proc.returncode == 0, err.decode()
    words = out.decode().split()
    index = words.index("result")
    return int(words[index + 1]), int(words[index + 2])


async def _over_trigger(url: str) -> None:
    async with open_store(url) as store:
        engine = Engine(store)
        await engine.put_context("shared", token_budget=3000, trigger_ratio=0.3, policy=policy())
        await engine.append_batch("shared", [turn(i) for i in range(30)])
        ctx = await engine.get_context("shared")
        assert ctx.needs_compaction() and ctx.used_tokens < 3000


async def _records(url: str) -> int:
    async with open_store(url) as store:
        return len((await Engine(store).list_summaries("shared")).summaries)


@pytest.mark.postgres
async def test_two_processes_one_summary(pg_url: str) -> None:
    await _over_trigger(pg_url)
    # a slow upstream, so both processes are at it at the same time
    async with FakeUpstream(default_reply=Reply(text=SUMMARY_TEXT, latency=1.0)) as fake:
        procs = await asyncio.gather(*(_spawn(pg_url, fake, ttl=5.0, wait=30.0) for _ in range(2)))
        for proc in procs:  # both start at once
            _go(proc)
        results = [await _result(proc) for proc in procs]
        asked = fake.requests_for("openai_chat")
    assert sum(done for done, _ in results) == 1
    assert sum(refused for _, refused in results) >= 1  # the other one found the lease taken
    assert len(asked) == 1
    assert await _records(pg_url) == 1


@pytest.mark.postgres
async def test_a_killed_holder_loses_its_lease_after_the_ttl(pg_url: str) -> None:
    await _over_trigger(pg_url)
    ttl = 5.0  # long beside any stall of a loaded machine, short for a test
    async with FakeUpstream(default_reply=Reply(text=SUMMARY_TEXT)) as fake:
        fake.script(Reply(text="never sent", latency=60.0), protocol="openai_chat")
        holder, taker = await asyncio.gather(
            _spawn(pg_url, fake, ttl=ttl, wait=120.0), _spawn(pg_url, fake, ttl=ttl, wait=60.0)
        )
        _go(holder)
        for _ in range(400):  # until its summary request is in flight
            if fake.requests:
                break
            await asyncio.sleep(0.05)
        assert len(fake.requests) == 1
        _go(taker)
        await asyncio.sleep(1.2 * ttl)  # past the first lease's expiry: the holder renews it
        assert len(fake.requests) == 1
        holder.send_signal(signal.SIGKILL)
        await holder.wait()
        done, refused = await _result(taker)
        assert len(fake.requests) == 2 and fake.requests[1].status == 200
    assert (done, refused >= 2) == (1, True)
    assert await _records(pg_url) == 1
