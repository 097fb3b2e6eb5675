"""The benchmark meters: peak memory in a fresh process, interleaved latency."""
import time

from odedet.evaluation.meters import compare_latency, measure_peak_memory


def test_peak_memory_meter_sees_a_known_200mb_allocation():
    m = measure_peak_memory("odedet.evaluation.meters:allocation_probe", {"megabytes": 200},
                            threads=1)
    # The baseline (interpreter, torch, odedet) is excluded; the probe's 200 MB is what is left.
    assert 190 <= m["peak_mb"] <= 230, m
    assert m["baseline_mb"] > 50 and m["absolute_peak_mb"] >= m["baseline_mb"] + 190


def test_peak_memory_meter_rejects_malformed_target():
    import pytest

    with pytest.raises(ValueError, match="package.module:function"):
        measure_peak_memory("odedet.evaluation.meters.allocation_probe", {})


def test_compare_latency_interleaves_and_orders_by_cost():
    calls = []

    def fast():
        calls.append("fast")

    def slow():
        calls.append("slow")
        time.sleep(0.02)

    stats = compare_latency({"fast": fast, "slow": slow}, warmup=1, repeat=4)
    assert len(stats["fast"].times) == 4 and len(stats["slow"].cpu_times) == 4
    assert stats["slow"].median > stats["fast"].median + 0.015
    assert calls[2:6] == ["fast", "slow", "slow", "fast"]  # rotating order after warm-up
