"""Meter measures real CPU, wall time and peak RSS of a block; counters add up."""

from __future__ import annotations

import time

import psutil
import pytest

from modelfab.registry import CostRecord, Meter, ledger

MB = 1 << 20


def test_busy_loop_costs_cpu_and_sleep_costs_wall():
    started = time.perf_counter()
    with Meter("busy") as m:
        # 0.3 s of CPU even on a loaded machine; process_time (a syscall) is called rarely so
        # the time is almost all user time
        end, x = time.process_time() + 0.3, 0
        while time.process_time() < end:
            for _ in range(20_000):
                x += 1
        time.sleep(0.2)
    elapsed = time.perf_counter() - started
    rec = m.record
    assert rec.stage == "busy"
    assert rec.cpu_s >= 0.25
    # Process CPU time counts every thread, so 0.3 s of it can pass in less wall time; the
    # wall clock must still cover the sleep and cannot exceed what was measured around it.
    assert 0.2 <= rec.wall_s <= elapsed


def test_sleep_alone_costs_little_cpu_and_peak_is_at_least_current_rss():
    rss = psutil.Process().memory_info().rss
    with Meter("idle") as m:
        time.sleep(0.3)
    assert m.record.wall_s >= 0.3
    assert m.record.cpu_s < 0.15
    assert m.record.peak_rss_bytes >= 0.9 * rss


def test_ru_maxrss_catches_a_spike_the_sampler_missed():
    if ledger.resource is None:
        pytest.skip("no resource module on this platform")
    rss = psutil.Process().memory_info().rss
    size = max(ledger._max_rss_bytes() - rss, 0) + 150 * MB  # sure to set a new lifetime high
    if size > 1024 * MB:
        pytest.skip("this process already peaked too high to set a new high cheaply")
    with Meter("spike", interval_s=3600) as m:  # the sampler never wakes inside the block
        block = bytearray(size)
        for i in range(0, len(block), 4096):
            block[i] = 1
        del block
    assert m.record.peak_rss_bytes >= rss + 140 * MB


@pytest.mark.parametrize("use_ru_maxrss", [True, False], ids=["sampler+ru_maxrss", "sampler"])
def test_peak_rss_sees_a_200mb_allocation_that_is_freed_inside_the_block(
    use_ru_maxrss, monkeypatch
):
    if not use_ru_maxrss:  # as on Windows: the sampler thread alone must see the peak
        monkeypatch.setattr(ledger, "_max_rss_bytes", lambda: None)
    baseline = psutil.Process().memory_info().rss
    with Meter("alloc") as m:
        block = bytearray(200 * MB)  # zero-filled pages: touch them so they are resident
        for i in range(0, len(block), 4096):
            block[i] = 1
        time.sleep(0.15)
        del block
    assert m.record.peak_rss_bytes >= baseline + 150 * MB
    # after the block the memory is gone, so a later stage must not inherit that peak
    with Meter("small") as later:
        time.sleep(0.1)
    assert later.record.peak_rss_bytes < baseline + 100 * MB


def test_counters_and_record():
    with Meter("distill") as m:
        m.add(teacher_forward_passes=10, cache_hits=3)
        m.add(teacher_forward_passes=5)
        m.labeled_examples = 120
    rec = m.record
    assert (rec.labeled_examples, rec.teacher_forward_passes, rec.cache_hits) == (120, 15, 3)
    assert CostRecord.from_dict(rec.to_dict()) == rec
    assert set(rec.to_dict()) == {
        "stage",
        "cpu_s",
        "wall_s",
        "peak_rss_bytes",
        "labeled_examples",
        "teacher_forward_passes",
        "cache_hits",
    }
    with pytest.raises(TypeError):
        m.add(gpu_hours=1)


def test_record_exists_even_when_the_block_raises_and_not_before_it_ends():
    m = Meter("boom")
    with pytest.raises(RuntimeError):
        _ = m.record
    with pytest.raises(ValueError), m:
        raise ValueError("stage failed")
    assert m.record.stage == "boom" and m.record.wall_s >= 0
    assert m._thread is not None and not m._thread.is_alive()
