"""TFRecord framing, read and write, with masked CRC32C checks (C-backed ``crc32c``).

``u64 length (LE) | u32 masked_crc(length) | payload | u32 masked_crc(payload)``. One record is one
RLDS episode. A bad payload checksum sinks that record only; a bad or short header sinks the rest
of the file, since the next record's position is then unknown.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterator

import crc32c as _crc32c

from vlaflow.schemas import CorruptRecord, TruncatedRecord

_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")


def masked_crc(data: bytes) -> int:
    c = _crc32c.crc32c(data)
    return (((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF


@dataclass
class RecordError:
    """A record that could not be read; ``fatal`` when the rest of the file is unreachable."""

    index: int
    offset: int
    error: CorruptRecord
    fatal: bool


def _file_size(f) -> int | None:
    """The stream's total size, so a declared length is checked before anything is allocated for it."""
    size = getattr(f, "size", None)
    if callable(size):  # pyarrow NativeFile
        try:
            return int(size())
        except Exception:
            pass
    try:
        here = f.tell()
        end = f.seek(0, 2)
        f.seek(here)
        return int(end)
    except (OSError, AttributeError, ValueError):
        return None


def iter_records(f: BinaryIO, *, start_index: int = 0, stop_index: int | None = None,
                 verify: bool = True, name: str = "") -> Iterator[tuple[int, int, bytes] | RecordError]:
    """Yield ``(index, offset, payload)`` from the file's current position, or a RecordError."""
    index = start_index
    offset = f.tell()
    size = _file_size(f)
    while stop_index is None or index < stop_index:
        header = f.read(12)
        if not header:
            return
        if len(header) < 12:
            yield RecordError(index, offset, TruncatedRecord(
                f"{name}: record {index} at byte {offset}: header truncated ({len(header)} of 12 bytes)"), True)
            return
        length, len_crc = _HEADER.unpack(header)
        if verify and masked_crc(header[:8]) != len_crc:
            yield RecordError(index, offset, CorruptRecord(
                f"{name}: record {index} at byte {offset}: length CRC32C mismatch"), True)
            return
        if size is not None and offset + 16 + length > size:  # never allocate what the file cannot hold
            yield RecordError(index, offset, TruncatedRecord(
                f"{name}: record {index} at byte {offset}: declares {length} payload bytes, the file has "
                f"{max(size - offset - 16, 0)} left"), True)
            return
        payload = f.read(length)
        footer = f.read(4)
        if len(payload) < length or len(footer) < 4:
            yield RecordError(index, offset, TruncatedRecord(
                f"{name}: record {index} at byte {offset}: payload truncated "
                f"({len(payload)} of {length} bytes)"), True)
            return
        if verify and masked_crc(payload) != _FOOTER.unpack(footer)[0]:
            yield RecordError(index, offset, CorruptRecord(
                f"{name}: record {index} at byte {offset}: payload CRC32C mismatch"), False)
        else:
            yield index, offset, payload
        index += 1
        offset += 16 + length


def index_records(f: BinaryIO) -> list[tuple[int, int]]:
    """(offset, framed size) of every record, reading headers only; stops at the first bad header."""
    out = []
    offset = f.tell()
    while True:
        header = f.read(12)
        if len(header) < 12:
            return out
        length, len_crc = _HEADER.unpack(header)
        if masked_crc(header[:8]) != len_crc:
            return out
        out.append((offset, 16 + length))
        offset += 16 + length
        f.seek(offset)


def frame(payload: bytes) -> bytes:
    header = struct.pack("<Q", len(payload))
    return header + struct.pack("<I", masked_crc(header)) + payload + struct.pack("<I", masked_crc(payload))


def write_records(f: BinaryIO, payloads) -> int:
    n = 0
    for p in payloads:
        f.write(frame(p))
        n += 1
    return n
