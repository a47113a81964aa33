"""A client's JSON is taken as written or refused, never stored altered; and
an ``Expect`` the server does not know gets the JSON answer on every path."""

from __future__ import annotations

import asyncio

from http_support import Api, Serve, text_message

from fastpaca_core.jsonutil import dumps, loads, loads_exact

BEYOND = 123456789012345678901234567890  # no 64-bit integer holds it
BELOW = -9223372036854775809  # one less than the smallest signed 64-bit integer


def _body(message: dict[str, object]) -> bytes:
    # the standard library writes any integer (orjson refuses those beyond 64 bits)
    import json

    return json.dumps({"message": message}).encode()


async def test_an_integer_beyond_64_bits_is_refused_not_stored_as_a_float(
    api: Api, cid: str
) -> None:
    """orjson reads such an integer as a float: the append was stored with
    ``1.2345678901234568e+29`` where the client sent an exact id."""
    await api.create(cid)
    await api.say(cid, "kept")
    cases = [
        text_message("a", metadata={"order": BEYOND}),
        text_message("b", metadata={"order": BELOW}),
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool-lookup",
                    "toolCallId": "c1",
                    "state": "input-available",
                    "input": {"id": BEYOND},
                }
            ],
        },
    ]
    for message in cases:
        reply = await api.post(f"/v1/contexts/{cid}/messages", data=_body(message))
        assert reply.status == 400, reply.body
        error = reply.json()
        assert error["error"] == "invalid_request"
        assert "64-bit" in error["message"], error
    log = await api.get(f"/v1/contexts/{cid}/messages")
    assert [m["parts"][0]["text"] for m in log.json()["messages"]] == ["kept"]
    ctx = await api.get(f"/v1/contexts/{cid}")
    assert ctx.json()["last_seq"] == 1 and ctx.json()["version"] == 1


async def test_integers_within_64_bits_and_long_digit_strings_come_back_as_sent(
    api: Api, cid: str
) -> None:
    await api.create(cid)
    metadata = {
        "u64": 18446744073709551615,
        "i64": -9223372036854775808,
        "phone": "12345678901234567890123",
        "ratio": 12345678901234567890.5,
    }
    message = text_message("order 98765432109876543210 shipped", metadata=metadata)
    reply = await api.post(f"/v1/contexts/{cid}/messages", data=_body(message))
    assert reply.status == 201, reply.body
    stored = (await api.get(f"/v1/contexts/{cid}/messages")).json()["messages"][0]
    assert stored["metadata"] == metadata
    assert stored["parts"][0]["text"] == "order 98765432109876543210 shipped"


def test_loads_exact_reads_what_orjson_reads_and_refuses_what_it_refuses() -> None:
    import pytest

    from fastpaca_core.jsonutil import JSONError

    plain = dumps({"a": [1, 2.5, "x" * 40, None, True], "b": {"c": "9" * 30}})
    assert loads_exact(plain) == loads(plain)
    assert loads_exact(b'{"n": 123456789012345678901234567890}') == {"n": BEYOND}
    for bad in (b'{"n": NaN}', b'{"n": 1234567890123456789012, "m": NaN}', b'"\\ud800"'):
        with pytest.raises(JSONError):
            loads_exact(bad)


async def _raw(port: int, request: bytes) -> tuple[bytes, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


async def test_an_unknown_expectation_on_an_unmatched_path_gets_the_json_answer(
    serve: Serve,
) -> None:
    """A path no route matches (404) or a method a path does not take (405),
    with an ``Expect`` other than ``100-continue``: aiohttp answered a
    plain-text 417 before any of our code ran. Matched routes ignore such an
    expectation; unmatched ones now too, and answer 404 / 405 as JSON."""
    api = await serve()
    port = int(api.base.rsplit(":", 1)[1])
    for method, path, status in (
        (b"POST", b"/nowhere", b"404"),
        (b"POST", b"/v1/contexts/x/nothing", b"404"),
        (b"PATCH", b"/v1/contexts/x/messages", b"405"),
    ):
        for expect in (b"something", b"100-continue"):
            head, body = await _raw(
                port,
                method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Expect: " + expect + b"\r\nContent-Type: application/json\r\n"
                b"Content-Length: 2\r\n\r\n{}",
            )
            if expect == b"100-continue":
                assert head.startswith(b"HTTP/1.1 100 Continue"), head
                head, _, body = body.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 " + status), head
            assert b"content-type: application/json" in head.lower(), head
            assert set(loads(body)) == {"error", "message"}
