"""Decompressing OpenClaw's zstd payloads with a bound on what they may expand to
(docs/openclaw-formats.md#zstd-payloads).

OpenClaw (2026.8+) writes plain single zstd frames, no dictionary: compressed transcript lines
(``transcript_events.event_zstd``), archived sessions (``session_transcript_archives.archive_blob`` with
``encoding = 'zstd'``, published ``*.zst`` copies) and cold archives. A frame need not state its content
size and a hostile one can expand without bound, so every call here takes a limit and fails with
:class:`ZstdError` (a plain reason, kept in quarantine or as a problem) instead of exhausting memory.

``zstandard`` (python-zstandard, BSD) is the maintained binding used; the standard library has no zstd
before Python 3.14.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import zstandard

#: zstd frames start with this magic number (little endian 0xFD2FB528).
MAGIC = b"\x28\xb5\x2f\xfd"
#: The most one transcript line may expand to (OpenClaw compresses lines of 1 KiB..4 MiB; 64 MiB is far
#: beyond).
MAX_LINE_BYTES = 64 * 1024 * 1024
#: Bytes handed on per read of a streamed archive (line-aligned pieces are cut from these).
STREAM_CHUNK = 4 * 1024 * 1024


class ZstdError(ValueError):
    """A payload that is not a readable zstd frame, or expands past its limit."""


def is_zstd(data: bytes) -> bool:
    return data[:4] == MAGIC


def decompress_line(blob: bytes, expected: int | None, limit: int = MAX_LINE_BYTES) -> bytes:
    """One compressed transcript line; ``expected`` is ``event_utf8_bytes`` (a mismatch is an error)."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise ZstdError(f"event_zstd is not a BLOB (a {type(blob).__name__})")
    blob = bytes(blob)
    if not is_zstd(blob):
        raise ZstdError("event_zstd is not a zstd frame (bad magic number)")
    bound = limit if expected is None or expected < 0 else min(limit, expected)
    try:
        declared = zstandard.frame_content_size(blob)
    except zstandard.ZstdError as exc:
        raise ZstdError(f"event_zstd frame header unreadable ({exc})") from exc
    if declared > bound:  # -1 means "not stated"
        raise ZstdError(f"event_zstd declares {declared:,} bytes, more than {bound:,}")
    try:
        out = zstandard.ZstdDecompressor().decompress(blob, max_output_size=max(bound, 1))
    except zstandard.ZstdError as exc:
        raise ZstdError(f"event_zstd does not decompress ({exc})") from exc
    if expected is not None and len(out) != expected:
        raise ZstdError(f"event_zstd decodes to {len(out):,} bytes, event_utf8_bytes says {expected:,}")
    return out


def stream_lines(source: BinaryIO | bytes, limit: int, chunk: int = STREAM_CHUNK) -> Iterator[bytes]:
    """The decompressed bytes of a (possibly multi-frame) zstd stream, in blocks that end on a newline
    (the last block may not); raises :class:`ZstdError` when it is not zstd or exceeds ``limit`` bytes."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        head = bytes(source[:4])
    else:
        head = source.read(4)
        source.seek(0)
    if head != MAGIC:
        raise ZstdError("not a zstd stream (bad magic number)")
    reader = zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True)
    total, carry = 0, b""
    try:
        while True:
            block = reader.read(chunk)
            if not block:
                break
            total += len(block)
            if total > limit:
                raise ZstdError(f"expands past {limit:,} bytes")
            buf = carry + block if carry else block
            cut = buf.rfind(b"\n") + 1
            if cut == 0:
                carry = buf
                continue
            carry = buf[cut:]
            yield buf[:cut]
    except zstandard.ZstdError as exc:
        raise ZstdError(f"corrupt zstd data ({exc})") from exc
    finally:
        reader.close()
    if carry:
        yield carry


def decompress_all(source: BinaryIO | bytes, limit: int) -> bytes:
    """A whole zstd stream at once (for small payloads), bounded by ``limit``."""
    return b"".join(stream_lines(source, limit))
