"""Reading: ``StreamRequest`` (what ``handle.stream()`` returns) and ``StreamResponse``.

A :class:`StreamRequest` is awaited (send the first request, get the
:class:`StreamResponse`) or used with ``async with`` (the same, and the
response is closed on exit).

A response is consumed exactly once: ``async for batch in res``, one of the
``iter_*`` methods, one of the accumulating methods (``body``/``text``/``json``)
or one of the ``subscribe_*`` methods. Its ``offset`` only moves when data has
been handed to you, so persisting it and resuming later never skips anything,
and never repeats a batch. Offsets exist only where a server response ends: the
item and chunk iterators move ``offset`` with a response's last piece. Its
``position`` is finer (the offset plus what of the current response was
handed out), so resuming from it repeats nothing even in the middle of a
large response.
"""

from __future__ import annotations

import codecs
import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator
from contextlib import aclosing
from types import TracebackType
from typing import Any, TypeVar, overload

import anyio
import httpx
import pydantic

from ._codec import loads_json
from ._errors import ParseError, UsageError, ValidationError
from ._limits import DEFAULT_READ_LIMITS, ReadLimits
from ._models import Batch
from ._position import Position, ReadPosition
from ._read_loop import BodyMode, EtagCache, ReadLoop
from ._redact import excerpt, redact_url
from ._retry import RetryPolicy
from ._transport import Transport, body_too_large
from ._types import HeadersArg, LiveMode, OnError, ParamsArg
from ._units import Unit

__all__ = ["StreamRequest", "StreamResponse", "stream_request"]

T = TypeVar("T")

BatchCallback = Callable[["Batch"], "Awaitable[object] | object"]


class StreamResponse:
    """A read session on one stream (returned by ``handle.stream(...)`` / ``stream(url)``).

    Iterate it for :class:`Batch` objects, or use ``iter_bytes()``,
    ``iter_text()``, ``iter_json(model=...)``, ``body()``/``text()``/``json()``
    or ``subscribe_json(callback)``; only one of them per response. Close it with
    ``aclose()`` or by using it as an async context manager.

    Example::

        async with handle.stream(offset=saved, live="auto") as res:
            async for batch in res:
                print(batch.items)
                saved = res.offset
    """

    def __init__(self, loop: ReadLoop, *, owned_transport: Transport | None = None) -> None:
        self._loop = loop
        self._owned = owned_transport
        self._consumer: str | None = None
        # What was handed out: its own copy, since the loop reads ahead of the consumer.
        # ``_handed`` counts items (or bytes) handed out of the response that began at
        # ``_position`` (an int, not a new position per item: this is the hot path).
        self._position = loop.position
        self._handed = 0

    # -- state -----------------------------------------------------------------------------

    @property
    def offset(self) -> str:
        """Offset after the last batch handed to you: persist it to resume from there."""
        return self._position.offset

    @property
    def position(self) -> Position:
        """Where to resume to get exactly what follows what was handed to you.

        Finer than :attr:`offset`: inside a large response it also counts the
        items (or bytes) of it already handed out. Inside an ``async for`` over
        ``iter_json()`` it is the position after the current item. Store
        ``str(res.position)`` and resume with
        ``handle.stream(offset=Position.parse(stored))``.

        Example::

            async for event in res.iter_json():
                await handle_event(event)
                await save(str(res.position))
        """
        return Position(
            self._position.offset, self._position.skip + self._handed, self._loop.skip_counts
        )

    @property
    def cursor(self) -> str | None:
        """The latest ``Stream-Cursor`` handed out (echoed on live requests)."""
        return self._position.cursor

    @property
    def up_to_date(self) -> bool:
        """Whether the data handed out so far reached the stream's tail."""
        return self._position.up_to_date

    @property
    def closed(self) -> bool:
        """Whether the stream is closed and everything was handed out (EOF)."""
        return self._position.closed

    @property
    def content_type(self) -> str | None:
        """The stream's content type."""
        return self._loop.content_type

    @property
    def status(self) -> int | None:
        """HTTP status of the first response of the session."""
        return self._loop.status

    @property
    def headers(self) -> httpx.Headers:
        """Headers of the latest response."""
        return self._loop.headers

    @property
    def url(self) -> str:
        """The stream URL (credentials redacted)."""
        return redact_url(self._loop.transport.url)

    @property
    def live(self) -> LiveMode:
        """The live mode the session was opened with."""
        return self._loop.live

    def __repr__(self) -> str:
        return f"StreamResponse({self.url!r}, offset={self.offset!r}, live={self.live!r})"

    # -- lifecycle -------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Release the connection (and the client, for module-level ``stream()``).

        May be called from another task: a read waiting for data then ends
        (its iteration stops without an error).
        """
        with anyio.CancelScope(shield=True):
            await self._loop.aclose()
            if self._owned is not None:
                owned, self._owned = self._owned, None
                await owned.aclose()

    async def __aenter__(self) -> StreamResponse:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- plumbing --------------------------------------------------------------------------

    def _claim(self, how: str) -> None:
        if self._consumer is not None:
            raise UsageError(
                f"this read response is already consumed by {self._consumer}; "
                f"cannot also use {how} (open another with handle.stream(offset=res.offset))"
            )
        self._consumer = how

    def _advance(self, end: ReadPosition) -> None:
        """Everything up to ``end`` was handed out (or is about to be, in one piece)."""
        self._position = self._position.advance(end)
        self._handed = 0

    def _wanted(self, end: ReadPosition, unit: Unit) -> bool:
        """Whether a complete unit is worth a batch: data, or news (caught up, closed)."""
        return unit.has_data or end.closed or (end.up_to_date and not self._position.up_to_date)

    def _batch(self, unit: Unit, after: ReadPosition) -> Batch:
        """The batch of a complete unit, handed out at position ``after``."""
        return Batch(
            unit.data,
            unit.items,
            offset=after.offset,
            cursor=after.cursor,
            up_to_date=after.up_to_date,
            closed=after.closed,
            json_mode=self._loop.json_mode,
        )

    async def _batches(self, *, until_caught_up: bool = False) -> AsyncGenerator[Batch, None]:
        """Batches worth handing out; the state is committed just before each one."""
        try:
            async with aclosing(self._loop.units(BodyMode.WHOLE)) as units:
                async for unit in units:
                    assert unit.end is not None  # whole bodies: every unit is complete
                    wanted = self._wanted(unit.end, unit)
                    self._advance(unit.end)
                    if not wanted:
                        continue
                    yield self._batch(unit, self._position)
                    if until_caught_up and (unit.end.up_to_date or unit.end.closed):
                        return
        finally:
            await self.aclose()

    async def _chunks(self) -> AsyncGenerator[bytes, None]:
        """Body bytes as they arrive; the state moves with the last chunk of a response."""
        try:
            async with aclosing(self._loop.units(BodyMode.CHUNKS)) as units:
                async for unit in units:
                    if unit.end is None:
                        data = unit.data or b""
                        self._handed += len(data)
                        yield data
                        continue
                    self._advance(unit.end)
                    if unit.has_data:
                        yield (
                            unit.data
                            if unit.data is not None
                            else self._batch(unit, self._position).data
                        )
        finally:
            await self.aclose()

    # -- consumption -----------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Batch]:
        self._claim("async for")
        return self._batches()

    def iter_bytes(self) -> AsyncIterator[bytes]:
        """The stream's bytes as they arrive, without buffering whole responses.

        On JSON streams each response body is a JSON array (use ``iter_json``).

        Example::

            async for chunk in res.iter_bytes():
                sink.write(chunk)
        """
        self._claim("iter_bytes()")
        return self._chunks()

    def iter_text(self) -> AsyncIterator[str]:
        """The stream's text as it arrives (UTF-8, split characters handled).

        Example::

            async for text in res.iter_text():
                print(text, end="")
        """
        self._claim("iter_text()")
        return self._text_chunks()

    async def _text_chunks(self) -> AsyncGenerator[str, None]:
        decoder = codecs.getincrementaldecoder("utf-8")()
        async with aclosing(self._chunks()) as chunks:
            async for chunk in chunks:
                try:
                    text = decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    raise self._not_utf8(exc) from None
                if text:
                    yield text
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise self._not_utf8(exc) from None

    def _not_utf8(self, exc: UnicodeDecodeError) -> ParseError:
        return ParseError(
            f"stream data after offset {excerpt(self.offset)} is not valid UTF-8: {exc}",
            offset=self.offset,
            url=self._loop.transport.url,
        )

    @overload
    def iter_json(self, model: None = None) -> AsyncIterator[Any]: ...
    @overload
    def iter_json(self, model: type[T] | pydantic.TypeAdapter[T]) -> AsyncIterator[T]: ...

    def iter_json(self, model: Any = None) -> AsyncIterator[Any]:
        """The items of a JSON stream one by one, validated by ``model`` if given.

        ``model`` is a pydantic model, any type pydantic can validate, or a
        ``TypeAdapter``. Items that fail raise :class:`ValidationError` naming the
        offset they were read from. Large responses are parsed while they
        arrive, so memory stays bounded whatever the size of a catch-up (and a
        body that turns out to be invalid late raises :class:`ParseError` after
        its earlier items).

        Example::

            async for event in res.iter_json(model=ChatEvent):
                print(event.role, event.text)
        """
        self._claim("iter_json()")
        if not self._loop.json_mode and self._loop.content_type is not None:
            raise UsageError(
                f"iter_json() needs a JSON stream, this one is {excerpt(self._loop.content_type)}"
            )
        adapter: pydantic.TypeAdapter[Any] | None
        if model is None or isinstance(model, pydantic.TypeAdapter):
            adapter = model
        else:
            adapter = pydantic.TypeAdapter(model)
        return self._items(adapter)

    async def _items(self, adapter: pydantic.TypeAdapter[Any] | None) -> AsyncGenerator[Any, None]:
        try:
            # Large bodies are parsed as they arrive, a group of items at a time.
            async with aclosing(self._loop.units(BodyMode.JSON_ITEMS)) as units:
                async for unit in units:
                    partial = unit.end is None  # a response's first groups: no position
                    if partial or not unit.has_data:
                        items = unit.items or []
                    else:  # Batch.items refuses data that was not read as JSON
                        items = self._batch(unit, self._position).items
                    if adapter is not None:
                        first = self._position.skip + self._handed  # its index in the response
                        items = [
                            self._validate(adapter, item, first + i) for i, item in enumerate(items)
                        ]
                    # The position counts each item just before it is handed out, and moves
                    # to the response's end just before its last item.
                    for item in items if partial else items[:-1]:
                        self._handed += 1
                        yield item
                    if unit.end is not None:
                        self._advance(unit.end)
                        if items:
                            yield items[-1]
        finally:
            await self.aclose()

    def _validate(self, adapter: pydantic.TypeAdapter[Any], item: Any, index: int) -> Any:
        try:
            return adapter.validate_python(item)
        except pydantic.ValidationError as exc:
            raise ValidationError(
                f"item {index} of the response read at offset {excerpt(self.offset)} does not "
                f"validate: {excerpt(str(exc), 500)}",
                offset=self.offset,
                url=self._loop.transport.url,
            ) from exc

    async def body(self) -> bytes:
        """All data up to the tail (or EOF) as bytes; JSON streams give one JSON array.

        Example::

            data = await (await handle.stream(live=False)).body()
        """
        self._claim("body()")
        return await self._accumulate()

    async def text(self) -> str:
        """All data up to the tail (or EOF), decoded as UTF-8.

        Example::

            text = await (await handle.stream(live=False)).text()
        """
        self._claim("text()")
        data = await self._accumulate()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self._not_utf8(exc) from None

    async def json(self) -> Any:
        """All items of a JSON stream up to the tail (a list), or the body parsed as JSON.

        Example::

            events = await (await handle.stream(live=False)).json()
        """
        self._claim("json()")
        if self._loop.json_mode:
            items: list[Any] = []
            async with aclosing(self._batches(until_caught_up=True)) as batches:
                async for batch in batches:
                    items.extend(batch.items)
            return items
        data = await self._accumulate()
        try:
            return loads_json(data)
        except ValueError as exc:
            raise ParseError(
                f"stream data is not a JSON document: {exc}", url=self._loop.transport.url
            ) from None

    async def _accumulate(self) -> bytes:
        parts: list[bytes] = []
        size = 0
        limit = self._loop.limits.max_body_bytes
        async with aclosing(self._batches(until_caught_up=True)) as batches:
            async for batch in batches:
                if len(batch):  # an empty batch says "caught up" or "closed"
                    data = batch.data
                    size += len(data)
                    if size > limit:
                        raise body_too_large(limit, url=self._loop.transport.url)
                    parts.append(data)
        if self._loop.json_mode:
            return _merge_json_arrays(parts)
        return b"".join(parts)

    async def subscribe_json(self, on_batch: BatchCallback) -> None:
        """Call ``on_batch(batch)`` for each batch of a JSON stream until the read ends.

        The callback may be sync or async; an async one is awaited before the
        next batch is read (backpressure). Returns at EOF (or at up-to-date when
        not live); an exception from the callback stops the read and propagates.

        Example::

            async def on_batch(batch: Batch) -> None:
                await db.insert_many(batch.items)
                await db.save_offset(batch.offset)

            await res.subscribe_json(on_batch)
        """
        self._claim("subscribe_json()")
        if not self._loop.json_mode and self._loop.content_type is not None:
            raise UsageError(
                "subscribe_json() needs a JSON stream, this one is "
                f"{excerpt(self._loop.content_type)}; use subscribe_bytes or subscribe_text"
            )
        await self._subscribe(on_batch)

    async def subscribe_bytes(self, on_batch: BatchCallback) -> None:
        """Like :meth:`subscribe_json`, for any stream (use ``batch.data``).

        Example::

            await res.subscribe_bytes(lambda batch: sink.write(batch.data))
        """
        self._claim("subscribe_bytes()")
        await self._subscribe(on_batch)

    async def subscribe_text(self, on_batch: BatchCallback) -> None:
        """Like :meth:`subscribe_json`, for text streams (use ``batch.text``).

        Example::

            await res.subscribe_text(lambda batch: print(batch.text, end=""))
        """
        self._claim("subscribe_text()")
        await self._subscribe(on_batch)

    async def _subscribe(self, on_batch: BatchCallback) -> None:
        async with aclosing(self._batches()) as batches:
            async for batch in batches:
                outcome = on_batch(batch)
                if inspect.isawaitable(outcome):
                    await outcome


def _merge_json_arrays(arrays: list[bytes]) -> bytes:
    """Several JSON array texts as one array, without parsing them again."""
    inner = [body.strip()[1:-1].strip() for body in arrays]
    return b"[" + b",".join(part for part in inner if part) + b"]"


class StreamRequest:
    """What ``handle.stream(...)`` returns: await it, or use it with ``async with``.

    Awaiting sends the first request (so a missing stream raises
    :class:`NotFoundError` there) and returns the :class:`StreamResponse`; the
    ``async with`` form also closes the response on exit.

    Example::

        res = await handle.stream(offset="-1")
        async with handle.stream(offset="-1", live="auto") as res:
            ...
    """

    __slots__ = ("_open", "_response")

    def __init__(self, open_response: Callable[[], Awaitable[StreamResponse]]) -> None:
        self._open = open_response
        self._response: StreamResponse | None = None

    def __await__(self) -> Generator[Any, None, StreamResponse]:
        return self._open().__await__()

    async def __aenter__(self) -> StreamResponse:
        self._response = await self._open()
        return self._response

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._response is not None:
            await self._response.aclose()


def stream_request(
    transport: Transport,
    *,
    offset: str | int | Position,
    live: LiveMode,
    headers: HeadersArg,
    params: ParamsArg,
    on_error: OnError | None,
    content_type: str | None,
    etags: EtagCache | None,
    owns_transport: bool,
    retry: RetryPolicy | None = None,
    limits: ReadLimits = DEFAULT_READ_LIMITS,
) -> StreamRequest:
    """The awaitable/context manager behind ``handle.stream()`` and ``stream()``."""

    async def open_response() -> StreamResponse:
        try:
            loop = ReadLoop(
                transport,
                offset=offset,
                live=live,
                headers=headers,
                params=params,
                on_error=on_error,
                content_type=content_type,
                etags=etags,
                retry=retry,
                limits=limits,
            )
            await loop.start()
        except BaseException:
            if owns_transport:
                with anyio.CancelScope(shield=True):
                    await transport.aclose()
            raise
        return StreamResponse(loop, owned_transport=transport if owns_transport else None)

    return StreamRequest(open_response)
