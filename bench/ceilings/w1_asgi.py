"""W1 HTTP ceiling: a bare ASGI app that does the whole ensemble inline.

Speaks the pipeline's JSON on ``POST /imdb/prediction`` (request ``{"key": ["words"],
"value": [...]}``, response with ``tensors.prediction``) and answers ``GET /healthz``.

Run: ``python -m bench.ceilings.w1_asgi --port 8000`` from the repository root.
"""

from __future__ import annotations

import orjson

from bench import workloads
from bench.ceilings import asgi

PREDICT_PATH = workloads.HTTP_PATH["w1"]

_model = workloads.W1Model()


async def app(scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
    """The whole HTTP surface: the prediction route and a health check."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/healthz" and scope["method"] == "GET":
        await asgi.send_json(send, 200, {"status": "ok"})
    elif scope["path"] == PREDICT_PATH and scope["method"] == "POST":
        await _predict(receive, send)
    else:
        await asgi.send_error(send, 404, f"no route {scope['method']} {scope['path']}")


async def _predict(receive: asgi.Receive, send: asgi.Send) -> None:
    request = orjson.loads(await asgi.read_body(receive))
    try:
        words = request["value"][request["key"].index("words")]
    except (KeyError, ValueError, IndexError):
        await asgi.send_error(send, 400, "request must carry key 'words' with its value")
        return
    await asgi.send_json(send, 200, workloads.response_json(workloads.ANSWER_TENSOR["w1"], _model(words)))


if __name__ == "__main__":
    options = asgi.options_from_argv(__doc__ or "")
    asgi.serve(app, options.port, one_write=options.one_write)
