"""CRC-32C (Castagnoli), as record batches and snapshot files use it.

The ``crc32c`` package is imported on first use, as the codec libraries are: its own import
(package metadata, its command line) costs about 20 ms of a ~200 ms broker start, and the
first Metadata answer needs no checksum.
"""

from __future__ import annotations


def crc32c(data: bytes | bytearray | memoryview) -> int:
    import crc32c as package  # after the first call, a dictionary lookup

    return int(package.crc32c(data))
