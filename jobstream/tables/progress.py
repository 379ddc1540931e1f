"""A job's live progress: which operations have ended, and how.

The persisting agent keeps one `JobProgress` per in-flight job in a Faust table. It remembers every
operation index that already has a terminal result (one bit each), so a response delivered twice is
recognised and never counted twice, and it knows the exact moment the last operation ends.
Pure: no Faust, no I/O; the table stores `encode()`'s bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_HEADER = struct.Struct(">III")  # total, succeeded, failed


@dataclass
class JobProgress:
    """Counters and the set of ended operation indexes of one job."""

    total: int
    succeeded: int
    failed: int
    ended: bytearray

    @classmethod
    def new(cls, total: int) -> JobProgress:
        """Progress of a job none of whose operations has ended."""
        return cls(total, 0, 0, bytearray((total + 7) // 8))

    @classmethod
    def decode(cls, raw: bytes) -> JobProgress:
        """The inverse of encode()."""
        total, succeeded, failed = _HEADER.unpack_from(raw)
        return cls(total, succeeded, failed, bytearray(raw[_HEADER.size :]))

    def encode(self) -> bytes:
        """A compact binary form: three counters and a bitmap of ended operations."""
        return _HEADER.pack(self.total, self.succeeded, self.failed) + bytes(self.ended)

    def record(self, index: int, succeeded: bool) -> bool:
        """Count operation `index` (1-based) as ended; False if already counted or out of range."""
        if not 1 <= index <= self.total:
            return False
        byte, bit = divmod(index - 1, 8)
        mask = 1 << bit
        if self.ended[byte] & mask:
            return False
        self.ended[byte] |= mask
        if succeeded:
            self.succeeded += 1
        else:
            self.failed += 1
        return True

    @property
    def complete(self) -> bool:
        """Whether every operation has a terminal result."""
        return self.succeeded + self.failed >= self.total
