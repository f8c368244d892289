"""A range of a file that goes into a response by ``sendfile(2)`` instead of through memory.

Fetch responses carry record batches exactly as stored, so large ones need not be read into
Python at all: the socket gets them from the page cache (one copy in the kernel instead of a
``pread`` into a buffer and a ``sendmsg`` out of it).
"""

from __future__ import annotations

import os


class FileSlice:
    """``length`` bytes of a file from ``position``.

    Holds its own duplicate of the file descriptor, so the segment may be closed, rolled or
    deleted (retention, truncation, topic deletion) before the response goes out; the
    duplicate is closed once the bytes are sent, or when the slice is dropped unsent.
    """

    __slots__ = ("fd", "length", "position")

    def __init__(self, fd: int, position: int, length: int) -> None:
        self.fd = -1  # so that __del__ has nothing to close if dup fails
        self.position = position
        self.length = length
        self.fd = os.dup(fd)

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return f"FileSlice(fd={self.fd}, position={self.position}, length={self.length})"

    def read(self) -> bytes:
        """The bytes themselves, for a peer that cannot take them by sendfile (TLS) or an
        encoder that needs one buffer. Raises OSError if the file has shrunk meanwhile."""
        data = os.pread(self.fd, self.length, self.position)
        if len(data) != self.length:
            raise OSError(f"file shrank under a slice: {len(data)} of {self.length} bytes")
        return data

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __del__(self) -> None:
        self.close()
