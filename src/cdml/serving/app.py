"""The HTTP face of a :class:`SearchService`: FastAPI routes, the web page, and a guard in
front of them (token, body size, time limit, a log line per request)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

import numpy as np
from fastapi import FastAPI, File, Query, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from cdml.serving.batching import Overloaded
from cdml.serving.service import RequestError, SearchService

log = logging.getLogger("cdml.serve")
STATIC = Path(__file__).parent / "static"
TOKEN_COOKIE = "cdml_token"

Scope, Message = dict[str, Any], dict[str, Any]
Receive, Send = Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]


class VectorQuery(BaseModel):
    vector: list[float] = Field(description="an embedding of the index's size")
    k: int = Field(10, description="neighbours to return")


def create_app(
    service: SearchService, token: str | None = None, reload_every: float | None = None
) -> Any:
    """The ASGI app serving ``service``: routes, web page and OpenAPI docs behind
    :class:`Guard`. With ``token`` every request must carry it; with ``reload_every`` the
    index folder is checked that often (seconds) and loaded again when rewritten."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.batcher.start()
        watcher = asyncio.create_task(_watch(service, reload_every)) if reload_every else None
        yield
        if watcher is not None:
            watcher.cancel()
        await service.batcher.stop()

    app = FastAPI(
        title="cdml search",
        summary="Nearest indexed images of an uploaded image, a vector or an indexed item.",
        docs_url=None, redoc_url=None, lifespan=lifespan,
    )  # fmt: skip
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _offline_docs(app)
    _errors(app)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/health", summary="whether the service answers")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info", summary="the model, index and limits served")
    async def info() -> dict[str, Any]:
        return service.facts()

    @app.post("/embed", summary="embeddings of uploaded images")
    async def embed(
        file: Annotated[list[UploadFile], File(description="images (repeat the field)")],
    ) -> dict[str, Any]:
        embeddings = await service.embed_uploads(await _read(file))
        return {"embeddings": embeddings.tolist(), "dim": int(embeddings.shape[1])}

    @app.post("/search", summary="the nearest indexed items of an uploaded image")
    async def search_upload(
        file: Annotated[UploadFile, File(description="the query image")],
        k: Annotated[int, Query(description="neighbours to return")] = 10,
    ) -> dict[str, Any]:
        service.check_k(k)
        started = time.perf_counter()
        vectors = await service.embed_uploads(await _read([file]))
        return await _results(service, vectors, k, started)

    @app.post("/search/vector", summary="the nearest indexed items of an embedding")
    async def search_vector(query: VectorQuery) -> dict[str, Any]:
        return await _results(service, np.asarray([query.vector]), query.k, time.perf_counter())

    @app.get("/search/item/{item_id}", summary="the nearest indexed items of an indexed item")
    async def search_item(item_id: int, k: int = 10) -> dict[str, Any]:
        started = time.perf_counter()
        return await _results(service, service.item_vector(item_id), k, started)

    @app.get("/items/{item_id}", summary="an indexed item's path and label")
    async def item(item_id: int) -> dict[str, Any]:
        return service.item(item_id)

    @app.get("/items/{item_id}/thumbnail", summary="an indexed item's image, as a PNG",
             response_class=Response)  # fmt: skip
    async def thumbnail(item_id: int, size: int = 128) -> Response:
        png = await asyncio.to_thread(service.thumbnail, item_id, size)
        return Response(png, media_type="image/png",
                        headers={"Cache-Control": "private, max-age=3600"})  # fmt: skip

    return Guard(app, service.limits.max_upload_bytes, service.limits.timeout, token)


async def _read(files: list[UploadFile]) -> list[tuple[str, bytes]]:
    return [(f"upload {f.filename or i + 1}", await f.read()) for i, f in enumerate(files)]


async def _results(
    service: SearchService, vectors: np.ndarray, k: int, started: float
) -> dict[str, Any]:
    neighbours = (await asyncio.to_thread(service.search, vectors, k))[0]
    took = round(1000 * (time.perf_counter() - started), 2)
    return {"neighbours": neighbours, "metric": service.gallery.metric, "took_ms": took}


async def _watch(service: SearchService, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            if await asyncio.to_thread(service.reload_if_changed):
                log.warning("index reloaded: %d items", len(service.gallery))
        except ValueError as error:
            log.warning("index not reloaded, still serving the previous one: %s", error)


def _offline_docs(app: FastAPI) -> None:
    """OpenAPI docs at ``/docs`` from files served here (swagger-ui-bundle), not a CDN."""
    import swagger_ui_bundle

    app.mount("/docs-files", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path))

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="cdml search: API",
            swagger_js_url="/docs-files/swagger-ui-bundle.js",
            swagger_css_url="/docs-files/swagger-ui.css",
            swagger_favicon_url="/docs-files/favicon-32x32.png",
        )  # fmt: skip


def _errors(app: FastAPI) -> None:
    """Every refusal as ``{"error": "..."}`` with its status; never a traceback."""

    def error(status: int, message: str, **headers: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers or None)

    @app.exception_handler(RequestError)
    async def refused(request: Any, exc: RequestError) -> JSONResponse:
        return error(exc.status, exc.message)

    @app.exception_handler(Overloaded)
    async def overloaded(request: Any, exc: Overloaded) -> JSONResponse:
        return error(503, str(exc), **{"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Any, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{' '.join(str(part) for part in problem['loc'])}: {problem['msg']}"
            for problem in exc.errors()
        ]
        return error(422, "; ".join(problems))

    @app.exception_handler(HTTPException)
    async def http(request: Any, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def failed(request: Any, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return error(500, f"internal error ({type(exc).__name__}); see the service's log")


class Guard:
    """ASGI middleware in front of the routes: refuses a request without ``token`` (when
    set: an ``Authorization: Bearer`` header, the ``token`` query parameter, which also sets
    a cookie for the web page, or that cookie) with 401, a body over ``max_bytes`` with 413
    before it is all read, a request that takes more than ``timeout`` seconds with 504
    (408 while its body arrives); logs each request with its status and milliseconds."""

    def __init__(self, app: Any, max_bytes: int, timeout: float, token: str | None) -> None:
        self.app, self.max_bytes, self.timeout, self.token = app, max_bytes, timeout, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), {"code": 0}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                if grant is not None:
                    message.setdefault("headers", []).append((b"set-cookie", grant))
            await send(message)

        grant = None
        try:
            allowed, grant = self._allowed(scope)
            if not allowed:
                await _reply(sending, 401, "missing or wrong token (send 'Authorization: "
                             "Bearer TOKEN' or open the page as /?token=TOKEN)")  # fmt: skip
                return
            body = await self._body(scope, receive, sending)
            if body is None:
                return
            try:
                await asyncio.wait_for(
                    self.app(scope, _replay(body, receive), sending), self.timeout
                )
            except asyncio.TimeoutError:
                if not status["code"]:
                    await _reply(sending, 504, f"the request took more than {self.timeout:g} s")
        finally:
            took = 1000 * (time.perf_counter() - started)
            log.info("%s %s %d %.1f ms", scope["method"], scope["path"], status["code"], took)

    def _allowed(self, scope: Scope) -> tuple[bool, bytes | None]:
        """Whether the request carries the token, and a cookie to set (given in the URL)."""
        if self.token is None:
            return True, None
        headers = dict(scope["headers"])
        bearer = headers.get(b"authorization", b"").decode("latin-1")
        offered = [bearer.removeprefix("Bearer ").strip()] if bearer.startswith("Bearer ") else []
        cookie = SimpleCookie(headers.get(b"cookie", b"").decode("latin-1"))
        if TOKEN_COOKIE in cookie:
            offered.append(cookie[TOKEN_COOKIE].value)
        in_url = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [])
        for value in offered + in_url:
            if hmac.compare_digest(value.encode(), self.token.encode()):
                grant = f"{TOKEN_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict"
                return True, grant.encode() if value in in_url else None
        return False, None

    async def _body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None once a refusal (413, 408) is sent."""
        length = dict(scope["headers"]).get(b"content-length")
        too_large = f"the request is larger than {self.max_bytes / 1e6:g} MB"
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _reply(send, 413, too_large)
            return None
        chunks, size, deadline = [], 0, time.monotonic() + self.timeout
        while True:
            try:
                message = await asyncio.wait_for(receive(), deadline - time.monotonic())
            except asyncio.TimeoutError:
                await _reply(send, 408, f"the upload took more than {self.timeout:g} s")
                return None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _reply(send, 413, too_large)
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body read ahead, then the client's own messages (its disconnection)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


async def _reply(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})
