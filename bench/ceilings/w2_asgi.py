"""W2 HTTP ceiling: a bare ASGI app in front of a hand-written asyncio micro-batcher.

Speaks the pipeline's JSON on ``POST /w2/prediction`` (request ``tensors.x``: 8 float32,
response ``tensors.y``: their sum) and answers ``GET /healthz``.

Run: ``python -m bench.ceilings.w2_asgi --port 8000`` from the repository root.
"""

from __future__ import annotations

import binascii

import numpy as np
import orjson

from bench import workloads
from bench.ceilings import asgi, batcher

PREDICT_PATH = workloads.HTTP_PATH["w2"]

_batcher = batcher.MicroBatcher(workloads.W2_BATCH_SIZE, workloads.W2_BATCH_TIMEOUT_S)


async def app(scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
    """The prediction route, a health check, and the lifespan that runs the batcher."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] != "http":
        return
    elif scope["path"] == "/healthz" and scope["method"] == "GET":
        await asgi.send_json(send, 200, {"status": "ok"})
    elif scope["path"] == PREDICT_PATH and scope["method"] == "POST":
        await _predict(receive, send)
    else:
        await asgi.send_error(send, 404, f"no route {scope['method']} {scope['path']}")


async def _lifespan(receive: asgi.Receive, send: asgi.Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            _batcher.start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await _batcher.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _predict(receive: asgi.Receive, send: asgi.Send) -> None:
    request = orjson.loads(await asgi.read_body(receive))
    try:
        x = workloads.tensor_from_json(request["tensors"]["x"]).astype(np.float32, copy=False)
    except (KeyError, TypeError, ValueError, binascii.Error):
        await asgi.send_error(send, 400, "request must carry tensor 'x' (float32, shape [8])")
        return
    y = await _batcher.submit(x)
    await asgi.send_json(send, 200, workloads.response_json(workloads.ANSWER_TENSOR["w2"], y))


if __name__ == "__main__":
    options = asgi.options_from_argv(__doc__ or "")
    asgi.serve(app, options.port, lifespan="on", one_write=options.one_write)
