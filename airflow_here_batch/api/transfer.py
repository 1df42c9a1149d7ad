"""Byte streams of uploads and downloads: chunking, gzip in both directions, truncation detection.

Plain generators and a decoder object with no network I/O, so the requests and aiohttp transports
stream the same way and memory stays flat whatever the file size.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from airflow_here_batch.api.errors import TransportError

CHUNK_SIZE = 1024 * 1024


def iter_lines_as_chunks(lines: Iterable[str | bytes], chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Join records into newline-terminated UTF-8 chunks of about ``chunk_size`` bytes."""
    buffer: list[bytes] = []
    size = 0
    for line in lines:
        data = line.encode("utf-8") if isinstance(line, str) else line
        if not data.endswith(b"\n"):
            data += b"\n"
        buffer.append(data)
        size += len(data)
        if size >= chunk_size:
            yield b"".join(buffer)
            buffer, size = [], 0
    if buffer:
        yield b"".join(buffer)


class LineStream(io.RawIOBase):
    """A binary file object over lines made on demand, that can be rewound to its start.

    ``produce()`` returns a fresh iterator of ``bytes`` lines each time; ``seek(0)`` starts it again,
    so an upload made from a generator can still be replayed by a retry (the hook rewinds seekable
    file objects). Only ``seek(0)`` (and seeking to the current position) is supported. Memory: one
    chunk of about ``chunk_size`` bytes.
    """

    def __init__(self, produce: Callable[[], Iterable[bytes]], chunk_size: int = CHUNK_SIZE) -> None:
        super().__init__()
        self._produce = produce
        self._chunk_size = chunk_size
        self._chunks: Iterator[bytes] | None = None
        self._buffer = b""
        self._offset = 0
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET and offset == self._position:
            return offset
        if whence != io.SEEK_SET or offset != 0:
            raise io.UnsupportedOperation("LineStream can only be rewound to its start")
        self._restart()
        return 0

    def _restart(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        self._chunks, self._buffer, self._offset, self._position = None, b"", 0, 0

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while self._offset >= len(self._buffer):
            if self._chunks is None:
                self._chunks = iter_lines_as_chunks(self._produce(), self._chunk_size)
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buffer, self._offset = chunk, 0
        n = min(len(view), len(self._buffer) - self._offset)
        view[:n] = self._buffer[self._offset : self._offset + n]
        self._offset += n
        self._position += n
        return n

    def close(self) -> None:
        if not self.closed:
            self._restart()
        super().close()


def gzip_chunks(chunks: Iterable[bytes], level: int = 1) -> Iterator[bytes]:
    """Gzip a stream on the fly (level 1: uploads are network-bound, not ratio-bound)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    for chunk in chunks:
        out = compressor.compress(chunk)
        if out:
            yield out
    yield compressor.flush()


class DownloadDecoder:
    """Turns a results/errors body into plain bytes and notices a cut-off stream.

    Downloads ask for ``Accept-Encoding: gzip`` and read the raw body, so a gzip stream that ends
    before its trailer (a dropped connection that HTTP framing did not catch) is an error, never a
    silently short file.
    """

    def __init__(self, content_encoding: str | None, expected_length: int | None = None) -> None:
        encoding = (content_encoding or "identity").strip().lower()
        if encoding not in ("gzip", "x-gzip", "identity", ""):
            raise TransportError(f"HERE sent a download with unsupported Content-Encoding {encoding!r}")
        self._decompressor = zlib.decompressobj(47) if encoding in ("gzip", "x-gzip") else None
        self._expected_length = expected_length
        self.raw_bytes = 0
        self.bytes_out = 0

    def feed(self, chunk: bytes) -> bytes:
        self.raw_bytes += len(chunk)
        if self._decompressor is None:
            self.bytes_out += len(chunk)
            return chunk
        try:
            out = self._decompressor.decompress(chunk)
        except zlib.error as exc:
            raise TransportError(f"the download's gzip stream is corrupt ({exc})") from None
        self.bytes_out += len(out)
        return out

    def finish(self) -> bytes:
        if self._expected_length is not None and self.raw_bytes < self._expected_length:
            raise TransportError(
                f"the download ended after {self.raw_bytes} of {self._expected_length} bytes"
            )
        if self._decompressor is None:
            return b""
        out = self._decompressor.flush()
        if not self._decompressor.eof:
            raise TransportError(f"the download's gzip stream ended early, after {self.raw_bytes} bytes")
        self.bytes_out += len(out)
        return out
