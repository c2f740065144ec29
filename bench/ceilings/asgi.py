"""What the bare-ASGI ceilings share: body reading, JSON answers, and starting uvicorn.

No web framework on purpose: the ceiling is the cheapest HTTP path this stack allows (one
uvicorn worker, uvloop, httptools, orjson), the figure a serving framework's hot path is
compared with.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal

import orjson
import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

_JSON_HEADERS = [(b"content-type", b"application/json")]


async def read_body(receive: Receive) -> bytes:
    """The whole request body, however many chunks it came in."""
    message = await receive()
    body: bytes = message.get("body", b"")
    while message.get("more_body", False):
        message = await receive()
        body += message.get("body", b"")
    return body


async def send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    """Answers with ``payload`` as JSON."""
    body = orjson.dumps(payload)
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, status: int, message: str) -> None:
    """Answers with the pipeline's error shape, so a mistake in the load is visible as such."""
    await send_json(send, status, {"err_no": 1, "err_msg": message, "key": [], "value": []})


def options_from_argv(description: str) -> argparse.Namespace:
    """The ``--port`` the runner picked (a free port on 127.0.0.1), and ``--one-write``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument(
        "--one-write",
        action="store_true",
        help="write each response in one system call, as the pipeline's gateway does (report only)",
    )
    return parser.parse_args()


def serve(app: App, port: int, lifespan: Literal["on", "off"] = "off", *, one_write: bool = False) -> None:
    """Runs ``app`` in this process: one uvicorn worker with uvloop and httptools.

    With ``one_write``, uvicorn's protocol is the gateway's (``pipeserve.gateway.
    http_protocol``): a response's head and body leave in one write instead of two.
    """
    http: Any = "httptools"
    if one_write:
        from pipeserve.gateway.http_protocol import OneWriteProtocol

        http = OneWriteProtocol
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        workers=1,
        loop="uvloop",
        http=http,
        lifespan=lifespan,
        log_level="warning",
        access_log=False,
    )
    uvicorn.Server(config).run()
