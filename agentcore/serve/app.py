"""The HTTP side of ``meta-agent serve``: a FastAPI app over an :class:`AgentPool`.

Routes: ``POST /v1/chat/completions`` (plain and streamed with server-sent
events), ``GET /v1/models`` and ``GET /health``. Every error is an
OpenAI-style JSON object with a 4xx status when the request is at fault
(malformed JSON, an unknown model, messages the chat template refuses, a
prompt longer than the context), 401 for a missing or wrong API key, and 500
only for a failure of the server itself; no request stops the server. Agents
run in worker threads, so the event loop keeps answering while they work.
:func:`serve` binds the socket first, so a caller knows the port (also port 0).
This module knows nothing about policies or backends.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sse_starlette.sse import EventSourceResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from meta_spider.agentcore.serve.protocol import (
    ServeRequestError,
    completion_body,
    completion_chunks,
    error_body,
    parse_chat_request,
)
from meta_spider.agentcore.serve.workers import AgentPool
from meta_spider.backends.llamacpp.errors import ContextFullError
from meta_spider.native.errors import ChatTemplateError

__all__ = ["create_app", "running_server", "serve"]

logger = logging.getLogger(__name__)

_STATUS_KIND = {401: "authentication_error", 404: "not_found_error", 405: "invalid_request_error"}


def _error(status: int, message: str, **fields: Any) -> JSONResponse:
    fields.setdefault("kind", _STATUS_KIND.get(status, "invalid_request_error" if status < 500 else "server_error"))
    return JSONResponse(error_body(message, **fields), status_code=status)


def create_app(pool: AgentPool, *, api_key: str | None = None) -> FastAPI:
    """The app answering with ``pool``; with ``api_key`` every ``/v1`` route wants ``Authorization: Bearer KEY``."""
    app = FastAPI(title="meta-spider", docs_url=None, redoc_url=None, openapi_url=None)
    created = int(time.time())

    @app.middleware("http")
    async def check_key(request: Request, call_next: Callable[[Request], Any]) -> Any:
        if api_key is not None and request.url.path.startswith("/v1"):
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
                problem = "no API key was sent" if not header else "the API key is wrong"
                return _error(401, f"{problem}: send the server's key as 'Authorization: Bearer KEY'",
                              code="invalid_api_key")
        return await call_next(request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = f"{request.method} {request.url.path}: {exc.detail}"
        if exc.status_code == 404:
            message += " (routes: POST /v1/chat/completions, GET /v1/models, GET /health)"
        return _error(exc.status_code, message)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("request %s %s failed", request.method, request.url.path)
        return _error(500, f"the server failed on this request: {type(exc).__name__}: {exc}")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": pool.model_id, "policy": pool.policy, "backend": pool.backend,
                "workers": pool.size, "busy": pool.busy}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": pool.model_id, "object": "model", "created": created,
                                            "owned_by": "meta-spider"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        raw = await request.body()
        try:
            try:
                body = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ServeRequestError(400, f"the request body is not valid JSON ({exc})") from exc
            chat = parse_chat_request(body)
            if chat.model != pool.model_id:
                raise ServeRequestError(404, f"model {chat.model!r} is not served here; this server serves "
                                        f"{pool.model_id!r} (GET /v1/models)", param="model",
                                        code="model_not_found", kind="not_found_error")
            reply = await anyio.to_thread.run_sync(pool.answer, chat)
        except ServeRequestError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        except ChatTemplateError as exc:
            return _error(400, f"the model's chat template refuses these messages: {exc}", param="messages")
        except ContextFullError as exc:  # llama.cpp's own check (its module imports no llama_cpp)
            return _error(400, f"the prompt does not fit in the model's context: {exc}", param="messages",
                          code="context_length_exceeded")
        if not chat.stream:
            return completion_body(chat.model, reply)

        async def events() -> Any:
            for chunk in completion_chunks(chat.model, reply):
                yield {"data": json.dumps(chunk, ensure_ascii=False)}
            yield {"data": "[DONE]"}

        return EventSourceResponse(events())

    return app


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _server(app: FastAPI, log_level: str) -> Any:
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=5))


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "warning",
          on_ready: Callable[[str], None] | None = None) -> None:
    """Serve ``app`` until interrupted; ``on_ready(base_url)`` is called once the socket is bound."""
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    if on_ready is not None:
        on_ready(f"http://{host}:{bound}")
    _server(app, log_level).run(sockets=[sock])


@contextmanager
def running_server(app: FastAPI, host: str = "127.0.0.1", *, log_level: str = "warning") -> Iterator[str]:
    """Serve ``app`` on an ephemeral port in a background thread; yields the base URL, stops on exit."""
    sock = _bind(host, 0)
    server = _server(app, log_level)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="meta-spider-serve")
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server thread did not start")
            time.sleep(0.01)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
