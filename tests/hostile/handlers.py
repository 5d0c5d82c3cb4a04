"""Reusable server behaviours for the hostile cases."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from functools import cache

from tests.hostile.server import Conn, Handler, HostileServer, Request, head

MIB = 1024 * 1024
OCTET = "application/octet-stream"
JSON = "application/json"


def stream_headers(
    offset: str = "0000000000000001", *, content_type: str = OCTET, up_to_date: bool = True
) -> dict[str, str]:
    headers = {"Content-Type": content_type, "Stream-Next-Offset": offset}
    if up_to_date:
        headers["Stream-Up-To-Date"] = "true"
    return headers


def reply(
    status: int,
    headers: Iterable[tuple[str, str]] | dict[str, str] = (),
    body: bytes = b"",
) -> Handler:
    """The same complete response to every request (keep-alive)."""

    async def handle(request: Request, conn: Conn, server: HostileServer) -> bool:
        await conn.respond(status, headers, body if request.method != "HEAD" else b"")
        return True

    return handle


def endless(
    chunk: bytes,
    *,
    headers: dict[str, str] | None = None,
    prefix: bytes = b"",
    total: int | None = None,
) -> Handler:
    """A chunked 200 whose body is ``prefix`` then ``chunk`` forever (or ``total`` bytes)."""

    async def handle(request: Request, conn: Conn, server: HostileServer) -> bool:
        if request.method == "HEAD":
            await conn.respond(200, headers or stream_headers())
            return True
        items = list((headers or stream_headers()).items())
        await conn.send(head(200, [*items, ("Transfer-Encoding", "chunked")], None))
        if prefix:
            await conn.send(b"%x\r\n%s\r\n" % (len(prefix), prefix))
        frame = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        sent = 0
        while total is None or sent < total:
            await conn.send(frame)
            sent += len(chunk)
        await conn.send(b"0\r\n\r\n")
        return True

    return handle


@cache
def gzip_bomb(inflated_mib: int) -> bytes:
    """A gzip body of ``inflated_mib`` MiB of zeros (about 1/1000 of that on the wire).

    Each 8 MiB block ends with a full flush, which resets the compressor: every block
    after the first compresses to the same bytes, so they are compressed once and
    repeated (1 GiB in well under a second instead of ~3 s; 1029:1 as before).
    """
    assert inflated_mib % 8 == 0, "whole 8 MiB blocks"
    zeros = bytes(8 * MIB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH) == again
    crc = 0
    for _ in range(inflated_mib // 8):
        crc = zlib.crc32(zeros, crc)
    size = inflated_mib * MIB
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, size & 0xFFFFFFFF)
    end = compressor.flush()  # the final (empty) block
    return header + first + again * (inflated_mib // 8 - 1) + end + trailer
