"""Second look at exact integers in request bodies: the standard library's
re-read (for a body holding a long run of digits) must refuse what it cannot
read as a 400, never a 500."""

from __future__ import annotations

from http_support import Api

from fastpaca_core.jsonutil import MAX_DEPTH, loads


async def test_a_deep_body_with_a_long_number_is_refused_not_a_500(api: Api, cid: str) -> None:
    """orjson reads 1,024 levels; the standard library, re-reading a body with
    a run of 19 digits, ran out of Python stack near 1,000 (RecursionError:
    a 500). Such a body is refused as too deep, as one without the digits is."""
    await api.create(cid)
    await api.say(cid, "kept")
    for levels in (960, 1010):  # orjson reads them (1,024 levels with the outer four)
        deep = b"[" * levels + b"1" + b"]" * levels
        for number in (b"1", b"1234567890123456789012345"):
            body = b'{"message": {"role": "user", "parts": [{"type": "text", "text": "'
            body += number + b'"}], "metadata": {"x": ' + deep + b"}}}"
            reply = await api.post(f"/v1/contexts/{cid}/messages", data=body)
            assert reply.status == 400, (levels, number, reply.body[:200])
            error = loads(reply.body)
            assert error["error"] == "invalid_request", error
            assert f"{MAX_DEPTH}" in error["message"] or "deep" in error["message"], error
    ctx = (await api.get(f"/v1/contexts/{cid}")).json()
    assert ctx["last_seq"] == 1 and ctx["version"] == 1
