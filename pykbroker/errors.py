"""Exception types shared by every layer.

Malformed input from the network or from disk raises exactly one family of our own
exceptions (``DecodeError`` and its subclasses), never ``IndexError``, ``struct.error``
or ``UnicodeDecodeError``, so callers can answer with Kafka's error code and keep serving.
"""

from __future__ import annotations

from pykbroker.error_codes import ErrorCode


class PykbrokerError(Exception):
    """Base class of every exception pykbroker raises on purpose."""


class DecodeError(PykbrokerError, ValueError):
    """Bytes that are truncated or malformed and cannot be decoded."""


class EncodeError(PykbrokerError, ValueError):
    """An object that cannot be written in the requested version."""


class CorruptRecordError(DecodeError):
    """A record batch that fails validation (length, magic, CRC, record framing)."""


class KafkaError(PykbrokerError):
    """A request-level failure that a handler answers with a Kafka error code.

    ``message`` defaults to the code's default Kafka message; ``str()`` gives ``"NAME: message"``.
    """

    error_code: ErrorCode
    message: str

    def __init__(self, error_code: ErrorCode, message: str | None = None) -> None:
        self.error_code = error_code
        self.message = error_code.message if message is None else message
        # What Kafka puts in a response's error_message: null unless a message was given.
        self.detail = message
        super().__init__(error_code, self.message)

    def __str__(self) -> str:
        return f"{self.error_code.name}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(ErrorCode.{self.error_code.name}, {self.message!r})"


class RecordValidationError(KafkaError):
    """Records of a produced batch that Kafka rejects one by one (KIP-467): each entry is
    (index of the record in the batch, why)."""

    def __init__(self, error_code: ErrorCode, record_errors: list[tuple[int, str]],
                 message: str | None = None) -> None:
        super().__init__(error_code, message)
        self.record_errors = record_errors


class CloseConnection(PykbrokerError):
    """Raised by a handler when Kafka would close the client's connection instead of
    answering (e.g. a failed acks=0 produce, so the client refreshes its metadata)."""
