"""Soak: the live path for a long time with random control changes and overload bursts.

A private PulseAudio server plays a steady sine into null sink ``rtvc_test_in``; rtvc (in this
process) captures its monitor and plays into ``rtvc_test_out``. Every 200..600 ms a random
control change goes through the control layer (:class:`rtvc.control.actions.Controller`, the
object the websocket server and the HTTP buttons call): a voice switch among the DSP voices,
a pitch / formant / mix change, bypass on or off. Every ``--burst-every`` seconds the worker is
stalled for 150..400 ms (an overload burst: ``LiveRunner.inject_stall`` makes the worker's next
block wait, as a slow model would, in the worker process or thread). The benchmark reports
xruns, dropped blocks, the largest and final buffer age, the time the buffer age took to come
back to its target after each burst, and the memory (RSS) at the start and the end: this process
plus the worker process.

    python bench/soak.py [--quick] [--json] [--seconds 120] [--out bench/out]

CI runs ``--seconds 120``; the published figure is ``--seconds 1800``. Writes ``soak.json``.
"""

from __future__ import annotations

import os

for _v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import gc
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.loopback import machine  # noqa: E402

__all__ = ["rss_mb", "random_change", "Bursts", "main"]

RATE = 48_000


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of a process in MB (``VmRSS`` from ``/proc/PID/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"VmRSS not found in /proc/{pid}/status")


def rss_total_mb(runner: Any) -> tuple[float, float]:
    """RSS of this process and of the runner's worker process (0 when it is a thread), MB."""
    pid = runner.worker_pid
    return rss_mb(), (rss_mb(pid) if pid is not None else 0.0)


def random_change(rng: random.Random, voices: list[str]) -> tuple[str, dict[str, Any]]:
    """One random control change: ``("voice", {"name": ...})`` or ``("params", {...})``."""
    k = rng.random()
    if k < 0.3:
        return "voice", {"name": rng.choice(voices)}
    if k < 0.8:
        return "params", {"pitch_st": round(rng.uniform(-12, 12), 1), "formant_ratio": round(rng.uniform(0.7, 1.4), 2)}
    if k < 0.9:
        return "params", {"mix": round(rng.uniform(0, 1), 2)}
    return "params", {"bypass": rng.random() < 0.5}


class Bursts:
    """Overload bursts: :meth:`stall` makes the worker's next block take ``ms`` longer."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.count = 0

    def stall(self, ms: float) -> None:
        self.runner.inject_stall(ms)
        self.count += 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="30 s (under a minute)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--seconds", type=float, default=None, help="run time (default 120; quick 30; published 1800)")
    ap.add_argument("--block-ms", type=float, default=10.0)
    ap.add_argument("--burst-every", type=float, default=10.0, help="seconds between overload bursts")
    ap.add_argument("--callback", choices=("native", "python"), default="native")
    ap.add_argument("--backend", choices=("portaudio", "pulse"), default="portaudio",
                    help="PortAudio through ALSA's pulse plugin, or rtvc's own PulseAudio client")
    ap.add_argument("--profile", choices=("live", "gaming"), default="live")
    ap.add_argument("--worker", choices=("auto", "process", "thread"), default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out"))
    a = ap.parse_args(argv)
    seconds = a.seconds or (30.0 if a.quick else 120.0)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(a.seed)
    from tests.pulse import PulseServer, runner_devices

    srv = PulseServer().start()
    t_start = time.monotonic()
    try:
        srv.pactl("load-module", "module-sine", "sink=rtvc_test_in", "frequency=220")
        os.environ.update(srv.child_env(sink="rtvc_test_out", source="rtvc_test_in.monitor"))
        from rtvc.audio import LiveRunner
        from rtvc.control.actions import Controller
        from rtvc.engine import Engine, EngineConfig
        from rtvc.errors import RtvcError
        from rtvc.params import Params

        # the test tone is a steady signal: the noise-floor gate would take it for noise and shut it out
        eng = Engine(EngineConfig(device_rate=RATE), params=Params(voice="neutral", gate_floor_margin_db=0.0))
        voices = [v.name for v in eng.registry.list() if v.kind == "dsp"]
        runner = LiveRunner(eng, **runner_devices(a.backend), rate=RATE, block_ms=a.block_ms, backend=a.backend,
                            callback=a.callback, profile=a.profile, worker=a.worker)
        ctl = Controller(eng, runner=runner)
        bursts = Bursts(runner)
        runner.start()
        t0 = time.monotonic()
        while runner.stats["worker_blocks"] < 50 and time.monotonic() - t0 < 15:
            time.sleep(0.05)
        time.sleep(1.0)
        for v in voices:  # load every voice once, so that steady-state memory is what we compare
            ctl.set_voice(v)
            time.sleep(0.1)
        gc.collect()
        rss0_main, rss0_worker = rss_total_mb(runner)
        rss0 = rss0_main + rss0_worker
        x0, d0 = eng.counters["xruns"], eng.counters["dropped_blocks"]
        t_run = time.monotonic()
        next_change = t_run
        next_burst = t_run + a.burst_every / 2
        changes = errors = 0
        recoveries: list[float] = []
        pending_burst: tuple[float, float] | None = None  # (burst end time, deadline)
        age_max = 0.0
        rss_track: list[tuple[float, float]] = []
        while (now := time.monotonic()) - t_run < seconds:
            age = eng.gauges.get("buffer_age_ms") or 0.0
            age_max = max(age_max, age)
            if now >= next_change:
                kind, arg = random_change(rng, voices)
                try:
                    if kind == "voice":
                        ctl.set_voice(arg["name"])
                    else:
                        ctl.set_params(arg)
                    changes += 1
                except RtvcError:
                    errors += 1
                next_change = now + rng.uniform(0.2, 0.6)
            if pending_burst is None and now >= next_burst:
                ms = rng.uniform(150, 400)
                bursts.stall(ms)
                pending_burst = (now + ms / 1000.0, now + ms / 1000.0 + 5.0)
                next_burst = now + a.burst_every
            if pending_burst is not None and now > pending_burst[0] + 0.02:
                if age <= runner.target_buffer_age_ms and runner.stats["worker_blocks"] > 0:
                    recoveries.append(max(0.0, now - pending_burst[0]))
                    pending_burst = None
                elif now > pending_burst[1]:
                    recoveries.append(float("inf"))
                    pending_burst = None
            if not rss_track or now - rss_track[-1][0] >= 10.0:
                rss_track.append((now, sum(rss_total_mb(runner))))
            time.sleep(0.01)
        s = runner.summary()
        gc.collect()
        rss1_main, rss1_worker = rss_total_mb(runner)
        rss1 = rss1_main + rss1_worker
        runner.stop()
    finally:
        srv.stop()
    rec = [r for r in recoveries if np.isfinite(r)]
    doc = {"benchmark": "soak", "machine": machine(), "rate_hz": RATE, "block_ms": a.block_ms, "callback": a.callback, "backend": a.backend, "worker": s["worker"],
           "worker_priority": s.get("worker_priority"),
           "profile": a.profile, "seconds": seconds, "quick": a.quick, "control_changes": changes,
           "control_errors": errors, "bursts": bursts.count, "xruns": s["xruns"] - x0,
           "dropped_blocks": s["dropped_blocks"] - d0, "buffer_age_ms_max": age_max,
           "buffer_age_ms_final": s["buffer_age_ms"], "target_buffer_age_ms": s["target_buffer_age_ms"],
           "recovery_s_max": max(recoveries) if recoveries else None,
           "recovery_s_p50": float(np.median(rec)) if rec else None,
           "recoveries_over_1s": sum(1 for r in recoveries if r > 1.0),
           "rss_mb_start": rss0, "rss_mb_end": rss1, "rss_growth_mb": rss1 - rss0,
           "rss_mb_main": [rss0_main, rss1_main], "rss_mb_worker": [rss0_worker, rss1_worker],
           "rss_mb_track": [round(m, 2) for _, m in rss_track], "stream_restarts": s["runner"]["stream_restarts"],
           "faults": s["faults"], "output_margin_blocks_end": s["out_margin_blocks"],
           "cuts": {k: s["runner"][k] for k in ("cuts", "forced_cuts", "trimmed_samples")},
           "wall_s": time.monotonic() - t_start}
    (out / "soak.json").write_text(json.dumps(doc, indent=1))
    print(f"soak {seconds:g} s: {changes} control changes, {bursts.count} bursts, xruns {doc['xruns']}, dropped "
          f"{doc['dropped_blocks']}, buffer age max {age_max:.1f} ms final {doc['buffer_age_ms_final']} ms "
          f"(target {doc['target_buffer_age_ms']:.1f}), recovery max {doc['recovery_s_max']} s, RSS "
          f"{rss0:.1f} -> {rss1:.1f} MB", file=sys.stderr, flush=True)
    if a.json:
        print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
