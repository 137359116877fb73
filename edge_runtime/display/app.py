"""The bedside page's web server (Starlette): one HTML page, its two assets, a live event stream, thumbnails.

Everything is served by the box itself (no CDN, no web fonts: hospital networks are offline). Beyond
localhost every request needs the access token (query ``?token=``, then a cookie the page load sets, or an
``Authorization: Bearer`` header); without it the answer is 401. Only the page's own assets are served: no
route reads a path from the request, so the audit log and every other file stay out of reach. ``/schema/NAME``
serves the contracts' JSON Schemas (docs/schemas), against which the page checks every message it draws.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from importlib import resources
from typing import Any

from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edge_runtime.contracts.schemas import CONTRACTS, schema_text
from edge_runtime.display.state import DisplayState

TOKEN_COOKIE = "fle_display_token"
PUSH_PERIOD_S = 0.25  # the page hears of a change within this, and of a silent runtime at least this often
ASSETS = {"app.js": "text/javascript", "schema.js": "text/javascript", "style.css": "text/css"}


def _asset(name: str) -> bytes:
    return resources.files("edge_runtime.display").joinpath("page", name).read_bytes()


def _token_of(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    bearer = header[7:] if header.lower().startswith("bearer ") else None
    return request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE) or bearer


def create_app(state: DisplayState, token: str | None, malformed: Callable[[], int] = lambda: 0) -> Starlette:
    """The page's app over a live DisplayState; token None means localhost only, no token asked.

    Args:
        state: what the feed thread keeps up to date.
        token: the access token required on every request (None: no token).
        malformed: how many malformed runtime messages the feed has skipped so far.
    """
    page = _asset("index.html")

    def allowed(request: Request) -> bool:
        given = _token_of(request)
        return token is None or (given is not None and secrets.compare_digest(given, token))

    def guarded(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Any:
            if not allowed(request):
                return Response("401: this display needs its access token (?token=...)", status_code=401)
            return await handler(request)

        return endpoint

    async def index(request: Request) -> Response:
        response = Response(page, media_type="text/html")
        if token is not None and request.query_params.get("token"):
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            return Response("not found", status_code=404)
        return Response(_asset(name), media_type=ASSETS[name])

    async def snapshot(request: Request) -> JSONResponse:
        return JSONResponse(state.snapshot(malformed()))

    async def thumbnail(request: Request) -> Response:
        jpeg = state.thumbnail(request.path_params["session"], request.path_params["view"])
        if jpeg is None:
            return Response("no thumbnail", status_code=404)
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def events(request: Request) -> EventSourceResponse:
        return EventSourceResponse(_updates(state, malformed, request))

    async def schema(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in CONTRACTS:
            return Response("not found", status_code=404)
        return Response(schema_text(name), media_type="application/schema+json")

    routes = [
        Route("/", guarded(index)),
        Route("/static/{name}", guarded(asset)),
        Route("/state", guarded(snapshot)),
        Route("/events", guarded(events)),
        Route("/schema/{name}", guarded(schema)),
        Route("/thumb/{session}/{view}.jpg", guarded(thumbnail)),
    ]
    return Starlette(routes=routes)


async def _updates(state: DisplayState, malformed: Callable[[], int], request: Request):
    """A snapshot whenever the state changed, and at least every second (the page's staleness clock)."""
    sent_version, quiet = -1, 0.0
    while not await request.is_disconnected():
        if state.version != sent_version or quiet >= 1.0:
            sent_version, quiet = state.version, 0.0
            yield {"event": "state", "data": json.dumps(state.snapshot(malformed()))}
        await asyncio.sleep(PUSH_PERIOD_S)
        quiet += PUSH_PERIOD_S
