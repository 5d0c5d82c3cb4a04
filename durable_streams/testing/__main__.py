"""Serve an :class:`InMemoryServer` over HTTP with uvicorn (the ``[server]`` extra).

Usage::

    python -m durable_streams.testing --port 4437 [--host 127.0.0.1]
        [--page-size N] [--page-bytes N] [--long-poll-timeout SECONDS]
        [--sse-reconnect-interval SECONDS] [--exit-on-stdin-close]

Prints one line, ``{"url": "http://HOST:PORT"}``, once it listens (port 0 picks a free port), and
stops on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading

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
        help="most messages (JSON messages, or appends) one read response carries (default: all)",
    )
    parser.add_argument(
        "--page-bytes",
        type=int,
        default=None,
        help="most body bytes one read response carries (JSON messages are not cut; default: all)",
    )
    parser.add_argument("--long-poll-timeout", type=float, default=30.0, help="seconds")
    parser.add_argument("--sse-reconnect-interval", type=float, default=None, help="seconds")
    parser.add_argument(
        "--exit-on-stdin-close",
        action="store_true",
        help="stop when standard input closes (so a crashed parent leaves no orphan server)",
    )
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
        page_bytes=options.page_bytes,
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
    if options.exit_on_stdin_close:

        def stop_at_eof() -> None:
            while sys.stdin.buffer.read(65536):
                pass
            runner.should_exit = True

        threading.Thread(target=stop_at_eof, daemon=True).start()
    runner.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
