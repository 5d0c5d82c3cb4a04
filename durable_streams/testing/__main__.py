"""Serve an :class:`InMemoryServer` over HTTP with uvicorn (the ``[server]`` extra).

Usage::

    python -m durable_streams.testing --port 4437 [--host 127.0.0.1] [--page-size N]
        [--long-poll-timeout SECONDS] [--sse-reconnect-interval SECONDS]

Prints one line, ``{"url": "http://HOST:PORT"}``, once it listens (port 0 picks a free port), and
stops on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys

from ._server import InMemoryServer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m durable_streams.testing",
        description="An in-memory Durable Streams server (for tests and local development).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4437, help="0 picks a free port")
    parser.add_argument(
        "--page-size",
        type=int,
        default=None,
        help="most JSON messages (or bytes) one read response carries (default: no limit)",
    )
    parser.add_argument("--long-poll-timeout", type=float, default=30.0, help="seconds")
    parser.add_argument("--sse-reconnect-interval", type=float, default=None, help="seconds")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the server until interrupted.

    Example::

        main(["--port", "0", "--page-size", "100"])
    """
    options = _parser().parse_args(argv)
    try:
        import uvicorn
    except ImportError:
        print(
            "uvicorn is needed to serve over HTTP: pip install 'aio-durable-streams[server]'",
            file=sys.stderr,
        )
        return 2
    sock = socket.socket(socket.AF_INET6 if ":" in options.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((options.host, options.port))
    host, port = sock.getsockname()[:2]
    server = InMemoryServer(
        page_size=options.page_size,
        long_poll_timeout=options.long_poll_timeout,
        sse_reconnect_interval=options.sse_reconnect_interval,
        url=f"http://{host}:{port}",
    )
    config = uvicorn.Config(
        server.asgi, log_level="warning", lifespan="off", timeout_graceful_shutdown=1
    )
    runner = uvicorn.Server(config)

    original_startup = runner.startup

    async def startup(sockets: list[socket.socket] | None = None) -> None:
        await original_startup(sockets=sockets)
        print(json.dumps({"url": server.url}), flush=True)

    runner.startup = startup  # type: ignore[method-assign]
    runner.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
