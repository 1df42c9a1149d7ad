"""Byte streams of uploads and downloads: chunking, gzip in both directions, truncation detection.

Plain generators and a decoder object with no network I/O, so the requests and aiohttp transports
stream the same way and memory stays flat whatever the file size.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator

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
