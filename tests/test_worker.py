"""The block worker in its own process: shared rings, forwarded control, mirrored telemetry,
restarts. File-driven (no sound card needed): the file clock in this process feeds the shared
input ring and drains the shared output ring, the worker process converts in between."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rtvc.audio import LiveRunner
from rtvc.engine import Engine, EngineConfig
from rtvc.errors import ConfigError
from rtvc.params import Params
from rtvc.audio.process import raise_priority
from rtvc.audio.rings import Rings, SharedBlock
from rtvc.audio.worker import BlockWorker
from rtvc.telemetry import Counter, Role


def _speech_like(path: Path, rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = (0.2 * sum(np.sin(2 * np.pi * k * 130 * t) / k for k in range(1, 15))).astype(np.float32)
    sf.write(path, x, rate, subtype="FLOAT")
    return x


def _wait(pred, timeout_s: float = 20.0) -> bool:
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_shared_block_is_one_memory_in_two_mappings(tmp_path: Path) -> None:
    a = SharedBlock.create(1000)
    try:
        b = SharedBlock(a.path, 1000, create=False)
        assert a.rings.input.buf.shape[0] == 1024  # power of two
        a.rings.input.buf[:3] = (1.0, 2.0, 3.0)
        a.rings.counts["output"][2] = 7
        b.rings.output.idx[0] = 11
        assert list(b.rings.input.buf[:3]) == [1.0, 2.0, 3.0]
        assert b.rings.counts["output"][2] == 7 and a.rings.output.idx[0] == 11
        # every array on its own cache line: the two ring ends never share one
        addrs = sorted(arr.ctypes.data for arr in a.rings.arrays.values())
        assert all(x % SharedBlock.ALIGN == 0 for x in addrs)
        b.close()
        assert a.path.exists()  # only the creator removes the file
    finally:
        a.close()
    assert not a.path.exists()


def test_block_worker_on_local_rings_counts_callbacks() -> None:
    eng = Engine(EngineConfig(device_rate=16000), params=Params(bypass=True, gate_threshold_db=-120.0, gate_floor_margin_db=0.0, gate_confirm_ms=0.0))
    rings = Rings.local(4096)
    out = rings.counts["output"]
    w = BlockWorker(eng, rings, rate=16000, block=160, max_backlog_blocks=2, out_margin_blocks=0.5,
                    margin_max_blocks=0.5, device_out=False, monitor=False)
    out[Counter.OUT_RING_EMPTY_EVENTS] = 1  # an output underflow seen by a callback before the first block
    w.collect()
    assert w.stats["startup_underflows"] == 1 and w.xruns == 0
    rings.input.write(np.zeros(160, np.float32))
    assert w.step()
    out[Counter.OUT_RING_EMPTY_EVENTS] = 3  # two more after it: glitches
    w.collect()
    assert w.stats["output_underflows"] == 2 and w.xruns == 2
    assert rings.totals()[Role.OUTPUT, Counter.OUT_RING_EMPTY_EVENTS] == 3
    w.collect()
    assert w.xruns == 2  # nothing counted twice
    # a worker started again on rings that have been playing (a restart, not a fresh start):
    # the gap before its first block is a glitch, counted as an xrun
    rings.output.write(np.zeros(160, np.float32))
    w2 = BlockWorker(eng, rings, rate=16000, block=160, max_backlog_blocks=2, out_margin_blocks=0.5,
                     margin_max_blocks=0.5, device_out=False, monitor=False)
    out[Counter.OUT_RING_EMPTY_EVENTS] = 4
    w2.collect()
    assert w2.stats["startup_underflows"] == 0 and w2.stats["output_underflows"] == 1
    assert w2.xruns == 1


def test_raise_priority_reports_what_it_got() -> None:
    assert raise_priority(None).startswith("normal")
    # in a throwaway thread: whatever it got is named, and it never raises
    import threading

    got: list[str] = []
    t = threading.Thread(target=lambda: got.append(raise_priority(5)))
    t.start()
    t.join()
    assert got[0].split()[0] in ("SCHED_FIFO", "nice", "normal")


@pytest.mark.parametrize("rate,block_ms", [(16000, 10.0), (48000, 5.0)])
def test_process_worker_output_equals_thread_worker(tmp_path: Path, rate: int, block_ms: float) -> None:
    """Where the worker runs changes nothing in the output: lockstep file runs through the
    worker process and through a worker thread write the same samples."""
    src = tmp_path / "speech.wav"
    _speech_like(src, rate, 0.8)
    params = Params(voice="higher", pitch_st=4.0, formant_ratio=1.12)
    outs = {}
    for home in ("process", "thread"):
        eng = Engine(EngineConfig(device_rate=rate), params=params)
        out = tmp_path / f"out-{home}.wav"
        with LiveRunner(eng, input_file=src, output_file=out, block_ms=block_ms, realtime=False, worker=home) as r:
            assert r.worker_home == home
            assert (r.worker_pid is not None) == (home == "process")
            assert r.finished.wait(60.0)
        assert r.error is None
        outs[home] = sf.read(out, dtype="float32")[0]
        # the worker's counters came back to this engine
        assert eng.counters["blocks"] > 0 and eng.counters["dropped_blocks"] == 0
        assert r.summary()["worker"] == home
    assert outs["process"].shape == outs["thread"].shape
    np.testing.assert_array_equal(outs["process"], outs["thread"])
    assert np.max(np.abs(outs["process"])) > 0.05


def test_control_reaches_the_worker_process_and_telemetry_comes_back(tmp_path: Path) -> None:
    src = tmp_path / "speech.wav"
    _speech_like(src, 16000, 2.0)
    eng = Engine(EngineConfig(device_rate=16000), params=Params())
    r = LiveRunner(eng, input_file=src, null_output=True, loop=True, worker="process")
    with r:
        assert _wait(lambda: eng.counters["blocks"] > 20), eng.counters
        applied = eng.counters["commands_applied"]
        eng.update(voice="robot")
        eng.reset()
        # applied in the worker process, counted there, mirrored here
        assert _wait(lambda: eng.counters["commands_applied"] >= applied + 2), eng.counters
        t = eng.telemetry()
        assert t["voice"] == "robot" and t["compute_ms_p50"] > 0.0 and t["input_level_dbfs"] > -40.0
        assert eng.algorithmic_latency_ms == pytest.approx(r.engine.latency_ms_for(160))
        assert t["buffer_age_ms"] is not None and t["worker_priority"]
        # an unknown voice is refused here, before anything is sent
        with pytest.raises(ConfigError, match="unknown voice 'nope'"):
            eng.update(voice="nope")
        assert eng.params.voice == "robot"
        # an overload burst injected into the worker process: the stale input is dropped there
        d0 = eng.counters["dropped_blocks"]
        r.inject_stall(300.0)
        assert _wait(lambda: eng.counters["dropped_blocks"] > d0), eng.counters
        with pytest.raises(ConfigError, match="stall of -1"):
            r.inject_stall(-1)
    assert eng.control.remote is None  # detached at stop: the engine is local again


def test_a_killed_worker_process_is_restarted(tmp_path: Path) -> None:
    src = tmp_path / "speech.wav"
    _speech_like(src, 16000, 2.0)
    eng = Engine(EngineConfig(device_rate=16000), params=Params(voice="deeper"))
    r = LiveRunner(eng, input_file=src, null_output=True, loop=True, worker="process")
    with r:
        assert _wait(lambda: r.stats["worker_blocks"] > 20)
        pid = r.worker_pid
        os.kill(pid, signal.SIGKILL)
        assert _wait(lambda: r.stats["worker_restarts"] == 1 and r.worker_pid not in (None, pid), 60.0), r.stats
        blocks = r.stats["worker_blocks"]
        assert _wait(lambda: r.stats["worker_blocks"] > blocks + 20)  # converting again
        assert r.error is None and not r.finished.is_set()
        assert any(f["kind"] == "worker" and "restarted" in f["message"] for f in r.faults), list(r.faults)
        assert eng.params.voice == "deeper"  # the new worker plays the current parameters


@pytest.mark.parametrize("home", ["thread", "process"])
def test_the_engine_that_heard_the_speaker_saves_the_memory_at_stop(tmp_path: Path, home: str) -> None:
    """In either home the engine that ran the audio writes the speaker memory when the runner
    stops (in the process home that is the worker's engine; the runner's own, which heard nothing,
    leaves the file alone)."""
    src = tmp_path / "speech.wav"
    _speech_like(src, 16000, 2.0)
    mem = tmp_path / "mem" / "speaker.wav"
    eng = Engine(EngineConfig(device_rate=16000, speaker_memory=str(mem)), params=Params(voice="neutral"))
    with LiveRunner(eng, input_file=src, null_output=True, realtime=False, worker=home) as r:
        assert r.finished.wait(60.0)
    assert r.error is None
    x, rate = sf.read(mem, dtype="float32")
    assert rate == 16000 and 1.8 * 16000 <= x.size <= 2.3 * 16000 and np.max(np.abs(x)) > 0.1
    assert eng.save_speaker() is (home == "thread")  # the runner's engine heard the audio only in the thread home


@pytest.mark.parametrize("home", ["thread", "process"])
def test_the_speaker_memory_is_saved_while_running_and_forgotten_on_request(tmp_path: Path, home: str) -> None:
    """While the audio runs, the engine that hears it saves the memory every
    ``speaker_save_every_s`` (the supervisor in the thread home, the worker's control thread in
    the process home), so a crash loses at most that much; ``forget_speaker`` on the runner's
    engine reaches the engine that hears the audio: the file goes and the telemetry's
    ``speaker_s`` starts again from 0."""
    src = tmp_path / "speech.wav"
    _speech_like(src, 16000, 2.0)
    mem = tmp_path / "speaker.wav"
    cfg = EngineConfig(device_rate=16000, speaker_memory=str(mem), speaker_save_every_s=0.5)
    eng = Engine(cfg, params=Params(voice="kumo"))
    with LiveRunner(eng, input_file=src, null_output=True, loop=True, worker=home):
        assert _wait(mem.exists, 30.0)  # saved while running, at ~1.5 s of speech (the first >= 1 s)
        first = sf.info(mem).frames
        assert _wait(lambda: sf.info(mem).frames > first + 8000, 30.0)  # and again as more is heard
        assert _wait(lambda: eng.telemetry()["speaker_s"] > 2.5, 30.0)
        assert eng.forget_speaker() is True and not mem.exists()
        assert _wait(lambda: eng.telemetry()["speaker_s"] < 1.0, 5.0)  # the hearing engine starts again
        assert _wait(mem.exists, 30.0)  # after >= 1 s of new speech
        assert sf.info(mem).frames <= 6 * 16000
