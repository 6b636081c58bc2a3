"""rtvc.telemetry and the rings: one counter layout shared with the compiled callback, deltas read
from it, the one merge, and a ring that refuses a size that is not a power of two."""

from __future__ import annotations

import numpy as np
import pytest

from rtvc._native.pa_callback import CNT, N_COUNTERS
from rtvc.audio.rings import Ring, Rings
from rtvc.telemetry import CallbackDeltas, Counter, Role, TelemetryPart, merge


def test_the_counter_enumeration_is_the_compiled_callbacks_layout() -> None:
    assert {c.name.lower(): int(c) for c in Counter} == CNT
    assert Rings.local(64).counts["monitor"].shape == (N_COUNTERS,)


def test_callback_deltas_read_each_role() -> None:
    d = np.zeros((3, N_COUNTERS), np.int64)
    d[Role.INPUT, Counter.PA_INPUT_OVERFLOW] = 1
    d[Role.INPUT, Counter.IN_RING_FULL_EVENTS] = 2
    d[Role.OUTPUT, Counter.PA_OUTPUT_UNDERFLOW] = 3
    d[Role.OUTPUT, Counter.OUT_RING_EMPTY_EVENTS] = 4
    d[Role.OUTPUT, Counter.OUT_RING_EMPTY] = 400
    d[Role.MONITOR, Counter.OUT_RING_EMPTY_EVENTS] = 5
    d[:, Counter.CALLBACKS] = (10, 20, 30)
    c = CallbackDeltas(d)
    assert (c.input_status, c.output_status, c.monitor_status) == (1, 3, 0)
    assert (c.input_overflows, c.output_underflows, c.monitor_underflows) == (2, 4, 5)
    assert c.output_missing == 400 and c.callbacks == 60 and c.any()
    assert not CallbackDeltas(np.zeros((3, N_COUNTERS), np.int64)).any()


def test_merge_adds_counters_and_later_gauges_win() -> None:
    own = TelemetryPart({"xruns": 1, "blocks": 5}, {"buffer_age_ms": None})
    a = TelemetryPart({"xruns": 2, "dropped_blocks": 3}, {"buffer_age_ms": 12.5, "stream_state": "running"})
    b = TelemetryPart({}, {"stream_state": "reconnecting"})
    m = merge(own, a, b)
    assert dict(m.counters) == {"xruns": 3, "blocks": 5, "dropped_blocks": 3}
    assert dict(m.gauges) == {"buffer_age_ms": 12.5, "stream_state": "reconnecting"}
    assert dict(own.counters) == {"xruns": 1, "blocks": 5}  # the parts are left as they were


def test_a_ring_checks_its_size_and_moves_samples() -> None:
    with pytest.raises(ValueError, match=r"power-of-two"):
        Ring(np.zeros(1000, np.float32), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match=r"float32"):
        Ring(np.zeros(1024, np.float64), np.zeros(2, np.int64))
    r = Ring(np.zeros(8, np.float32), np.zeros(2, np.int64))
    assert r.write(np.arange(10, dtype=np.float32)) == 8 and r.write_available() == 0
    out = np.zeros(3, np.float32)
    assert r.readinto(out) == 3 and list(out) == [0.0, 1.0, 2.0]
    assert r.discard(2) == 2 and r.read_available() == 3
