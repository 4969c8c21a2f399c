"""A Flask service (sync views, threads) that generates an image per request and is told of completion by
EvoLink's callback, with the sync ``Client``.

    EVOLINK_API_KEY=sk-evo-... EVOLINK_CALLBACK_URL=https://your.host/evolink/callback python examples/flask_app.py

    curl -X POST https://your.host/generate -H 'content-type: application/json' -d '{"prompt": "a cat"}'

One sync Client per process, shared by the server's threads (every call runs on the client's own event loop),
closed when the server stops. Under gunicorn (``--threads 8``), make it in each worker, not before the fork
(no ``--preload``). The callback view hands the body to ``client.callbacks.handle``. Settings as in
examples/aiohttp_app.py: EVOLINK_API_KEY, EVOLINK_BASE_URL, EVOLINK_CALLBACK_URL, EVOLINK_ALLOW_LOCAL_CALLBACKS=1
(local testing only), APP_HOST, APP_PORT, APP_TLS_CERT, APP_TLS_KEY.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, jsonify, request

import evolink_async as evo

client = evo.Client(
    timeouts=evo.Timeouts(wait=600),  # every wait bounded: no thread held forever by a task that never ends
    callback_url=os.environ.get("EVOLINK_CALLBACK_URL") or None,
    allow_local_callback_url=os.environ.get("EVOLINK_ALLOW_LOCAL_CALLBACKS") == "1",
)

app = Flask(__name__)
app.config["MAX_CONTENT_LENGTH"] = 256 * 1024  # a callback body is a task object: a few kB


@app.post("/generate")
def generate() -> Any:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
        return jsonify(error="'prompt' (a string) is required"), 400
    try:
        task = client.generate(body["prompt"], size=body.get("size"), quality=body.get("quality"), timeout=600)
    except evo.ValidationError as exc:
        return jsonify(error=str(exc), field=exc.field), 400
    except evo.TaskFailedError as exc:
        return jsonify(error=exc.code, task_id=exc.task_id), 502
    except evo.EvolinkError as exc:
        return jsonify(error=type(exc).__name__, task_id=exc.task_id), 502
    return jsonify(task_id=task.id, urls=list(task.results))


@app.post("/evolink/callback")
def evolink_callback() -> Any:
    status, answer = client.callbacks.handle(request.get_data())  # answers at once; the read runs in the client
    return jsonify(answer), status


def main() -> None:
    cert = os.environ.get("APP_TLS_CERT")
    ssl_context = (cert, os.environ["APP_TLS_KEY"]) if cert else None
    try:
        # Flask's own server, for the example; in production, gunicorn or waitress with threads.
        app.run(
            host=os.environ.get("APP_HOST", "127.0.0.1"),
            port=int(os.environ.get("APP_PORT", "8443")),
            ssl_context=ssl_context,
            threaded=True,
        )
    finally:
        client.close()


if __name__ == "__main__":
    main()
