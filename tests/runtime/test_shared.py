"""Shared-memory links (dnnpart.runtime._shared): what goes through them, what stays in
Ray's message, where each sample's arrays land, and that nothing is left in /dev/shm."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from dnnpart.runtime import _shared
from dnnpart.runtime._shared import MIN_BYTES, Links, SharedArray

pytestmark = pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm")

BIG = MIN_BYTES // 4  # float32 elements of an array just large enough to be shared


def _leftovers() -> list[str]:
    return [n for n in os.listdir("/dev/shm") if n.startswith("dnnpart-links-")]


@pytest.fixture
def pair():
    """A writer (0) and a reader of 3 slots of 4 arrays of BIG floats; the folder gone
    once both have mapped it, as a run does."""
    before = _leftovers()
    spec = _shared.create([4 * 4 * BIG], 3)
    assert oct(os.stat(spec.folder).st_mode & 0o777) == "0o700"
    writer, reader = Links(spec, writer=0), Links(spec, writer=None)
    _shared.remove(spec)
    assert _leftovers() == before
    return writer, reader


def test_large_arrays_go_through_shared_memory_small_ones_stay(pair):
    writer, reader = pair
    rng = np.random.default_rng(0)
    big = rng.standard_normal((2, BIG // 2)).astype(np.float32)
    ints = np.arange(BIG, dtype=np.int64)
    small = np.ones(BIG - 1, np.float32)  # one float under MIN_BYTES
    writer.start(writer.slot(7))
    sent = writer.put(writer.slot(7), {"big": big, "ints": ints, "small": small})
    assert type(sent["big"]) is SharedArray and type(sent["ints"]) is SharedArray
    assert sent["small"] is small
    got = reader.get(sent)
    np.testing.assert_array_equal(got["big"], big)
    np.testing.assert_array_equal(got["ints"], ints)
    assert got["ints"].dtype == np.int64 and not got["big"].flags.writeable
    assert got["small"] is small


def test_each_sample_in_flight_has_its_own_slot_and_a_full_slot_falls_back(pair):
    writer, reader = pair
    a = np.full(BIG, 1.0, np.float32)
    b = np.full(BIG, 2.0, np.float32)
    assert [writer.slot(i) for i in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    sent = {}
    for sample, arr in ((0, a), (1, b), (2, a)):
        writer.start(writer.slot(sample))
        sent[sample] = writer.put(writer.slot(sample), {"x": arr})["x"]
    offsets = sorted(s.offset for s in sent.values())
    assert all(hi - lo >= a.nbytes for lo, hi in zip(offsets, offsets[1:], strict=False))
    np.testing.assert_array_equal(reader.get({"x": sent[1]})["x"], b)
    # a slot holds 4 arrays; the fifth of the same sample travels in the message
    slot = writer.slot(3)
    writer.start(slot)
    out = [writer.put(slot, {"x": a})["x"] for _ in range(5)]
    assert [type(x) is SharedArray for x in out] == [True] * 4 + [False]
    # a new sample in the slot starts from its beginning again
    writer.start(slot)
    assert writer.put(slot, {"x": b})["x"].offset == out[0].offset
    big = np.zeros(5 * BIG, np.float32)  # larger than a whole slot
    assert writer.put(writer.slot(4), {"x": big})["x"] is big


def test_a_shared_array_outside_its_file_is_refused(pair):
    _, reader = pair
    size = reader.spec.slots * reader.spec.slot_bytes[0]
    for bad in (
        SharedArray(0, size - 8, (4,), "<f4"),
        SharedArray(0, -4, (1,), "<f4"),
        SharedArray(1, 0, (1,), "<f4"),
    ):
        with pytest.raises(ValueError, match="outside"):
            reader.get({"x": bad})


def test_a_process_that_cannot_see_the_files_is_on_another_machine(tmp_path):
    spec = _shared.create([MIN_BYTES], 2)
    _shared.remove(spec)
    with pytest.raises(OSError):
        Links(spec, writer=None)


def test_no_room_in_dev_shm_is_an_os_error_and_leaves_nothing(monkeypatch):
    before = _leftovers()

    def full(fd, offset, size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OSError, match="No space"):
        _shared.create([MIN_BYTES, MIN_BYTES], 4)
    assert _leftovers() == before


def test_a_copy_outlives_the_next_sample_in_its_slot(pair):
    writer, reader = pair
    slot = writer.slot(0)
    writer.start(slot)
    sent = writer.put(slot, {"x": np.full(BIG, 1.0, np.float32)})
    view, kept = reader.get(sent)["x"], reader.get(sent, copy=True)["x"]
    writer.start(slot)  # the sample in_flight later
    writer.put(slot, {"x": np.full(BIG, 2.0, np.float32)})
    assert view[0] == 2.0  # a view sees the slot written again
    assert kept.flags.writeable and (kept == 1.0).all()


def test_slot_bytes_by_hand():
    """Device 0 sends 100 KiB and 1 KiB (under MIN_BYTES: not counted), device 1 returns
    a 32 KiB output, the driver places a 20 KiB input; 64 bytes of alignment each, a
    quarter more; a sample twice the export's size doubles the devices' share."""
    manifest = {
        "k": 2,
        "model": {"input_shapes": {"x": [1, 5120]}},
        "transfers": [{"from": 0, "bytes": 100 << 10}, {"from": 0, "bytes": 1 << 10}],
    }
    x = np.zeros((1, 5120), np.float32)
    fed = [[{"x": x}, {}]]
    want = [1.25 * ((100 << 10) + 64), 1.25 * ((32 << 10) + 64), 1.25 * ((20 << 10) + 64)]
    assert _shared.slot_bytes(manifest, fed, {"x": x}, [[], [32 << 10]]) == [int(w) for w in want]
    x2 = np.zeros((2, 5120), np.float32)
    got = _shared.slot_bytes(manifest, [[{"x": x2}, {}]], {"x": x2}, [[], [32 << 10]])
    assert got[:2] == [int(1.25 * ((200 << 10) + 64)), int(1.25 * ((64 << 10) + 64))]
