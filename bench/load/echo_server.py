"""The baseline: a bare Tornado WebSocket server that parses each JSON frame and sends it back.

    python -m bench.load.echo_server [--host 127.0.0.1] [--port 0]

It prints the same "listening on http://HOST:PORT/" line as `chatbot serve`, so
the harness starts both the same way, and stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

import tornado.web
import tornado.websocket
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets


class EchoSocket(tornado.websocket.WebSocketHandler):
    def check_origin(self, origin: str) -> bool:
        return True

    def on_message(self, message: str | bytes) -> None:
        try:
            frame = json.loads(message)
        except ValueError:
            frame = {"type": "error", "code": "bad_json"}
        self.write_message(json.dumps(frame))


async def serve(host: str, port: int) -> None:
    sockets = bind_sockets(port, host)
    server = HTTPServer(tornado.web.Application([(r"/ws", EchoSocket)]))
    server.add_sockets(sockets)
    print(f"echo listening on http://{host}:{sockets[0].getsockname()[1]}/ (WebSocket at /ws)",
          file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A bare Tornado JSON echo WebSocket server at /ws.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
