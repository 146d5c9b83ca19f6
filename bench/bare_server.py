"""The baseline the bot's ack is compared with: a bare aiohttp handler on 127.0.0.1 that reads the
request and answers 200 with a fixed body (the bot's own `/release help` answer, so the same size
and content type), with no Slack verification and no routing beyond one path.

    .venv/bin/python -m bench.bare_server --port P --body-file F [--content-type T] [--charset C]

GET /healthz answers 200 once it listens. Started and stopped (by PID) by bench.release_bench.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aiohttp import web


def build(body: bytes, content_type: str, charset: str | None = None) -> web.Application:
    async def events(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type=content_type, charset=charset)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/slack/events", events)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--content-type", default="application/json")
    parser.add_argument("--charset")
    args = parser.parse_args()
    app = build(args.body_file.read_bytes(), args.content_type, args.charset)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
