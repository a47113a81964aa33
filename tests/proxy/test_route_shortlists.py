"""The router's shortcut under ``/v1/contexts/`` (``routing._shortlists``)
picks, for every path and method, what aiohttp's own walk picks: the same
route and match, or the same 404 / 405 with the same allowed methods."""

from __future__ import annotations

import itertools
import re

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from aiohttp.web_urldispatcher import MatchInfoError, UrlMappingMatchInfo

from fastpaca_core.http import create_app
from fastpaca_core.http.routing import _shortlists, add_routes, expect_everywhere
from fastpaca_core.settings import Settings
from fastpaca_proxy import install_proxy

_VALUES = ("c1", "a.b", "x%2Fy", "openai", "messages", "input_tokens")
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _app() -> web.Application:
    app = install_proxy(create_app(Settings(store="memory://")))
    app.freeze()
    return app


def _paths(app: web.Application) -> set[str]:
    """Every route's path with each value in its variables, and paths near them."""
    paths = {"/v1/contexts/", "/v1/contexts//messages", "/v1/contexts/c1/nothing/here"}
    for resource in app.router.resources():
        canonical = resource.canonical
        names = re.findall(r"\{(\w+)\}", canonical)
        for values in itertools.product(_VALUES, repeat=len(names)):
            path = canonical
            for name, value in zip(names, values, strict=True):
                path = path.replace("{" + name + "}", value, 1)
            paths |= {path, path + "/", path + "/more", path.rpartition("/")[0] + "/other"}
    return paths


async def _both(app: web.Application, method: str, path: str) -> tuple[object, object]:
    request = make_mocked_request(method, path, app=app)
    ours = await app.router.resolve(request)
    theirs = await web.UrlDispatcher.resolve(app.router, request)  # unwrapped
    return _outcome(ours), _outcome(theirs)


def _outcome(info: UrlMappingMatchInfo) -> object:
    if isinstance(info, MatchInfoError):
        exc = info.http_exception
        return exc.status, exc.headers.get("Allow")
    return info.route, dict(info)


async def test_the_app_takes_the_shortcut() -> None:
    app = _app()
    lists = _shortlists(app.router.resources())
    assert lists is not None
    chat = "/v1/contexts/{id}/openai/chat/completions"
    assert [r.canonical for r in lists[6]][0] == chat  # first of its list, not eleventh


async def test_every_path_and_method_resolves_as_aiohttp_resolves() -> None:
    app = _app()
    paths = _paths(app)
    assert len(paths) > 100
    for path in sorted(paths):
        for method in _METHODS:
            ours, theirs = await _both(app, method, path)
            assert ours == theirs, (method, path)


async def _noop(request: web.Request) -> web.Response:
    return web.Response()


async def test_a_route_the_shortcut_cannot_rank_turns_it_off() -> None:
    """A variable with its own regex may span segments: a route that ``/``
    counts cannot place, added before the others, keeps the router's order."""
    app = web.Application()
    table = web.RouteTableDef()
    table.post("/v1/contexts/{id}/{rest:.*}")(_noop)
    table.post("/v1/contexts/{id}/openai/chat/completions")(_noop)
    add_routes(app, table)
    expect_everywhere(app)
    app.freeze()
    assert _shortlists(app.router.resources()) is None
    ours, theirs = await _both(app, "POST", "/v1/contexts/c1/openai/chat/completions")
    assert ours == theirs
    route = ours[0]  # type: ignore[index]
    assert route.resource.canonical == "/v1/contexts/{id}/{rest}"
