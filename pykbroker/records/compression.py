"""The four Kafka record codecs, with a hard cap on decompressed size.

A batch's records section is compressed as one stream. We decompress only when Kafka requires a
look inside (per-record checks, compaction, control markers), and a hostile producer can send a
small batch that inflates to gigabytes, so every decoder stops as soon as its output would pass
``max_size`` instead of allocating first and checking later. Every codec-library failure is
turned into :class:`CorruptRecordError` so callers handle exactly one exception family.

Formats match what real clients write: gzip (``GZIPOutputStream``), snappy both raw (librdkafka,
franz-go) and xerial-framed (Java), LZ4 frame format with independent 64 KiB blocks (what
``KafkaLZ4BlockOutputStream`` writes for magic v2), and zstd frames with or without a content size.

The codec libraries are imported on first use: a broker whose clients never compress does not
carry them in memory.
"""

from __future__ import annotations

import struct
import zlib
from typing import Final

from pykbroker.errors import CorruptRecordError, EncodeError

__all__ = [
    "CODEC_NAMES",
    "DEFAULT_MAX_DECOMPRESSED_SIZE",
    "GZIP",
    "LZ4",
    "NONE",
    "SNAPPY",
    "XERIAL_MAGIC",
    "ZSTD",
    "compress",
    "decompress",
]

NONE: Final = 0
GZIP: Final = 1
SNAPPY: Final = 2
LZ4: Final = 3
ZSTD: Final = 4
CODEC_NAMES: Final = {NONE: "none", GZIP: "gzip", SNAPPY: "snappy", LZ4: "lz4", ZSTD: "zstd"}

DEFAULT_MAX_DECOMPRESSED_SIZE: Final = 64 * 1024 * 1024

#: First 8 bytes of a xerial snappy stream, followed by int32 version and int32 compat version.
XERIAL_MAGIC: Final = b"\x82SNAPPY\x00"
_XERIAL_HEADER = XERIAL_MAGIC + struct.pack(">ii", 1, 1)
_XERIAL_BLOCK = 32 * 1024  # xerial's default block size, what the Java client uses
_INT32 = struct.Struct(">i")

_ZSTD_BLOCK_MAX = 128 * 1024  # ZSTD_BLOCKSIZE_MAX: most output one zstd block can produce
_ZSTD_MIN_BLOCK = 4  # smallest block on the wire: 3-byte header + 1 RLE byte

Buffer = bytes | bytearray | memoryview


def _too_big(codec: int, max_size: int) -> CorruptRecordError:
    name = CODEC_NAMES[codec]
    return CorruptRecordError(f"{name} records section decompresses to more than {max_size} bytes")


def compress(codec: int, data: Buffer, *, level: int | None = None, xerial: bool = False) -> bytes:
    """Compress a records section with ``codec``.

    ``xerial`` selects the Java client's framed snappy instead of raw snappy; both are readable
    by every client, raw is smaller and what librdkafka writes.
    """
    if codec == GZIP:
        obj = zlib.compressobj(6 if level is None else level, zlib.DEFLATED, 31)
        return obj.compress(data) + obj.flush()
    if codec == SNAPPY:
        import cramjam

        if not xerial:
            return bytes(cramjam.snappy.compress_raw(bytes(data)))
        view = memoryview(data)
        parts = [_XERIAL_HEADER]
        for start in range(0, len(view), _XERIAL_BLOCK):
            block = bytes(cramjam.snappy.compress_raw(bytes(view[start : start + _XERIAL_BLOCK])))
            parts.append(_INT32.pack(len(block)))
            parts.append(block)
        return b"".join(parts)
    if codec == LZ4:
        import lz4.frame

        # Java reads only independent blocks; no content size or checksum, like Kafka's writer.
        out: bytes = lz4.frame.compress(
            bytes(data),
            compression_level=0 if level is None else level,
            block_size=lz4.frame.BLOCKSIZE_MAX64KB,
            block_linked=False,
            content_checksum=False,
            store_size=False,
        )
        return out
    if codec == ZSTD:
        import zstandard

        zout: bytes = zstandard.ZstdCompressor(level=3 if level is None else level).compress(data)
        return zout
    if codec == NONE:
        return bytes(data)
    raise EncodeError(f"unknown compression codec {codec}")


def decompress(codec: int, data: Buffer, max_size: int = DEFAULT_MAX_DECOMPRESSED_SIZE) -> bytes:
    """Decompress a records section, raising :class:`CorruptRecordError` past ``max_size``."""
    if codec == NONE:
        if len(data) > max_size:
            raise _too_big(codec, max_size)
        return bytes(data)
    decoder = _DECODERS.get(codec)
    if decoder is None:
        raise CorruptRecordError(f"unknown compression codec {codec}")
    try:
        return decoder(data, max_size)
    except CorruptRecordError:
        raise
    except Exception as exc:  # codec libraries raise their own types (and MemoryError)
        raise CorruptRecordError(f"invalid {CODEC_NAMES[codec]} data: {exc!r}") from exc


def _gunzip(data: Buffer, max_size: int) -> bytes:
    """Concatenated gzip members, as Java's ``GZIPInputStream`` reads them."""
    out = bytearray()
    rest = bytes(data)
    while True:
        obj = zlib.decompressobj(31)
        tail = rest
        while not obj.eof:
            chunk = obj.decompress(tail, max_size - len(out) + 1)
            out += chunk
            if len(out) > max_size:
                raise _too_big(GZIP, max_size)
            tail = obj.unconsumed_tail
            if not chunk and not tail and not obj.eof:
                raise CorruptRecordError("truncated gzip stream")
        rest = obj.unused_data
        if not rest:
            return bytes(out)


def _unsnappy_raw(data: Buffer, max_size: int, already: int = 0) -> bytes:
    import cramjam

    # The raw format starts with the uncompressed length: refuse before allocating it.
    size = cramjam.snappy.decompress_raw_len(data)
    if already + size > max_size:
        raise _too_big(SNAPPY, max_size)
    result = bytes(cramjam.snappy.decompress_raw(data))
    if len(result) != size:
        raise CorruptRecordError("snappy output length differs from its preamble")
    return result


def _unsnappy(data: Buffer, max_size: int) -> bytes:
    view = memoryview(data)
    if not view:
        raise CorruptRecordError("empty snappy stream")
    if bytes(view[:8]) != XERIAL_MAGIC:
        return _unsnappy_raw(view, max_size)
    if len(view) < 16:
        raise CorruptRecordError("truncated xerial snappy header")
    parts: list[bytes] = []
    total = 0
    pos = 16
    while pos < len(view):
        if pos + 4 > len(view):
            raise CorruptRecordError("truncated xerial snappy block length")
        (block_len,) = _INT32.unpack_from(view, pos)
        pos += 4
        if block_len < 0 or pos + block_len > len(view):
            raise CorruptRecordError(f"xerial snappy block length {block_len} out of bounds")
        part = _unsnappy_raw(view[pos : pos + block_len], max_size, total)
        total += len(part)
        parts.append(part)
        pos += block_len
    return b"".join(parts)


def _unlz4(data: Buffer, max_size: int) -> bytes:
    import lz4.frame

    out = bytearray()
    rest = bytes(data)
    if not rest:
        raise CorruptRecordError("empty lz4 stream")
    while rest:
        obj = lz4.frame.LZ4FrameDecompressor()
        chunk = obj.decompress(rest, max_length=max_size - len(out) + 1)
        while True:
            out += chunk
            if len(out) > max_size:
                raise _too_big(LZ4, max_size)
            if obj.eof:
                break
            if obj.needs_input:
                raise CorruptRecordError("truncated lz4 frame")
            chunk = obj.decompress(b"", max_length=max_size - len(out) + 1)
        rest = obj.unused_data
    return bytes(out)


def _unzstd(data: Buffer, max_size: int) -> bytes:
    """Concatenated zstd frames, content size optional (zstd-jni streams omit it).

    zstandard has no output bound on ``decompressobj`` and its readers silently accept truncated
    frames, so we feed input in slices small enough that one slice can't overshoot the cap by
    more than one block: each block needs at least 4 input bytes and yields at most 128 KiB.
    """
    import zstandard

    out = bytearray()
    view = memoryview(bytes(data))
    pos = 0
    end = len(view)
    if not end:
        raise CorruptRecordError("empty zstd stream")
    while pos < end:
        obj = zstandard.ZstdDecompressor().decompressobj()
        while not obj.eof:
            if pos >= end:
                raise CorruptRecordError("truncated zstd frame")
            step = _ZSTD_MIN_BLOCK * max(1, (max_size - len(out)) // _ZSTD_BLOCK_MAX)
            out += obj.decompress(view[pos : pos + step])
            pos += step
            if len(out) > max_size:
                raise _too_big(ZSTD, max_size)
        # Bytes fed past the end of this frame come back as unused_data: start the next frame.
        pos = min(pos, end) - len(obj.unused_data)
    return bytes(out)


_DECODERS = {GZIP: _gunzip, SNAPPY: _unsnappy, LZ4: _unlz4, ZSTD: _unzstd}
