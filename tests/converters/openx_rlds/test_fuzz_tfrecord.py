"""Fuzzing the TFRecord framing and the Example parsing: only the project's named errors escape, no hang, and a
declared 2^40-byte record is refused before anything is allocated for it."""
from __future__ import annotations

import io
import struct
import tracemalloc

from hypothesis import HealthCheck, given, settings, strategies as st

from vlaflow.converters.openx_rlds.tfrecord import RecordError, frame, index_records, iter_records, masked_crc
from vlaflow.schemas import EpisodeError, TruncatedRecord

FUZZ = settings(derandomize=True, max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PAYLOADS = [b"first record", b"", b"x" * 300]
VALID = b"".join(frame(p) for p in PAYLOADS)


def _read(data: bytes) -> list:
    return list(iter_records(io.BytesIO(data), name="fuzz.tfrecord"))


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes_give_records_or_named_errors(data):
    items = _read(data)
    assert all(isinstance(x, (tuple, RecordError)) for x in items)
    assert sum(isinstance(x, RecordError) and x.fatal for x in items) <= 1
    assert len(items) <= len(data) // 16 + 1  # every record costs at least 16 bytes: no loop without progress
    index_records(io.BytesIO(data))


@FUZZ
@given(st.integers(0, len(VALID) - 1), st.integers(1, 255), st.integers(0, len(VALID)))
def test_flipped_or_truncated_files_lose_only_what_is_damaged(pos, xor, cut):
    damaged = bytearray(VALID)
    damaged[pos] ^= xor
    for data in (bytes(damaged), VALID[:cut]):
        items = _read(data)
        good = [x for x in items if isinstance(x, tuple)]
        for index, _, payload in good:
            assert payload == PAYLOADS[index]  # whatever survives is exactly what was written
        errors = [x for x in items if isinstance(x, RecordError)]
        assert len(good) + len(errors) <= len(PAYLOADS)
        assert all(isinstance(e.error, EpisodeError) and e.error.code for e in errors)


def test_a_huge_declared_length_is_refused_before_allocating():
    header = struct.pack("<Q", 1 << 40)
    data = header + struct.pack("<I", masked_crc(header)) + b"tiny"
    tracemalloc.start()
    items = _read(data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(items) == 1 and isinstance(items[0].error, TruncatedRecord) and items[0].fatal
    assert "declares 1099511627776 payload bytes" in str(items[0].error)
    assert peak < 1 << 20


def test_example_payloads_fuzzed_are_quarantined_not_raised(tmp_path):
    from hypothesis import given as given_

    from vlaflow.converters.openx_rlds import OpenXRLDSConverter
    from vlaflow.converters.openx_rlds.synth import write_sample_dataset

    src = write_sample_dataset(tmp_path / "src", episodes=1, steps=3, shards=1)
    conv = OpenXRLDSConverter(str(src))
    unit = conv.work_units(1 << 30)[0]
    with open(unit.source, "rb") as f:
        (_, _, payload), *_ = [x for x in iter_records(f) if isinstance(x, tuple)]

    @FUZZ
    @given_(st.integers(0, len(payload) - 1), st.integers(1, 255), st.integers(0, len(payload)))
    def fuzz(pos, xor, cut):
        damaged = bytearray(payload)
        damaged[pos] ^= xor
        for data in (bytes(damaged), payload[:cut]):
            try:
                conv.episode(data, "k", unit, 0)
            except EpisodeError as err:
                assert err.code and "\n" not in str(err)

    fuzz()
