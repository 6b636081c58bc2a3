"""Loopback delay through a real audio server: clicks -> PulseAudio -> rtvc -> PulseAudio.

A private PulseAudio server (``tests/pulse.py``, no sound card needed) gets two mono remap
sinks on the two channels of null sink ``rtvc_test_in``: the benchmark plays noise clicks into
the left one (``rtvc_test_src``); rtvc captures ``rtvc_test_in.monitor`` channel 0 and plays
into the right one (``rtvc_test_ret``). One stereo recording of the monitor holds each click
and rtvc's answer on the same clock, so the lag between the channels is the whole delay
(capture through the server, rtvc, playback through the server).

For each voice kind (bypass, DSP, neural if ``rtvc voices`` lists one) and block size (5 and
10 ms) it reports the delay p50 / p99 / max over the clicks (at least 200 without
``--quick``), the clicks lost, xruns and the stream latencies the host reports, for each audio
backend (PortAudio through ALSA's ``pulse`` plugin, rtvc's own libpulse client; both by default,
side by side in the same run). The clicks
start after the stream has run ``--settle`` seconds (20): the live profile's output margin
adapts to the path in that time (its xruns are reported apart, with the margin before and
after the clicks).

    python bench/loopback.py [--quick] [--json] [--clicks 200] [--callback native|python]
                             [--backend portaudio|pulse|both]
                             [--profile live|gaming] [--device-latency low|high|MS] [--out bench/out]

Writes ``loopback.json`` and ``loopback.png`` (histograms) into ``--out``.
"""

from __future__ import annotations

import os

for _v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = ["machine", "pulse_rig", "neural_voice", "click_train", "measure_delays", "run_config", "main"]

RATE = 48_000


def machine() -> str:
    """The machine, named in every figure."""
    from rtvc.sysinfo import machine_description

    return machine_description()


class pulse_rig:
    """Context manager: a private PulseAudio server with the loopback remap sinks; this
    process's environment points PortAudio at it (so use it before ``rtvc.audio`` opens
    anything; PortAudio enumerates devices when sounddevice is first imported)."""

    def __enter__(self) -> Any:
        from tests.pulse import PulseServer

        self.srv = PulseServer().start()
        for name, pos in (("rtvc_test_src", "front-left"), ("rtvc_test_ret", "front-right")):
            self.srv.pactl("load-module", "module-remap-sink", f"sink_name={name}", "master=rtvc_test_in",
                           "channels=1", f"master_channel_map={pos}", "channel_map=mono", "remix=no")
        os.environ.update(self.srv.child_env(sink="rtvc_test_ret", source="rtvc_test_in.monitor"))
        return self.srv

    def __exit__(self, *exc: Any) -> None:
        self.srv.stop()


def neural_voice() -> str | None:
    """The first voice of kind ``neural`` that ``rtvc voices`` lists (None: there is none)."""
    from rtvc.voices import VoiceRegistry

    for info in VoiceRegistry().list():
        if info.kind == "neural":
            return info.name
    return None


def click_train(n_clicks: int, *, period_s: float, seed: int = 0, lead_s: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Noise clicks (2 ms, Hann) every ``period_s`` plus a random 0..10 ms offset (so clicks land
    at every phase of the host block). Returns the signal and the click start samples."""
    rng = np.random.default_rng(seed)
    n = 96
    starts = (lead_s + np.arange(n_clicks) * period_s + rng.uniform(0, 0.010, n_clicks)) * RATE
    starts = starts.astype(np.int64)
    x = np.zeros(int(starts[-1] + RATE * 0.5), np.float32)
    for s in starts:
        x[s:s + n] = (0.5 * rng.standard_normal(n) * np.hanning(n)).astype(np.float32)
    return x, starts


def measure_delays(left: np.ndarray, right: np.ndarray, *, period_s: float, max_delay_s: float = 0.3) -> tuple[list[float], int]:
    """Delay in ms from each click onset in ``left`` to the onset of rtvc's answer in ``right``.

    Onset: the first sample above 25 % of the event's peak (the same rule on both channels,
    so a neutral path is measured exactly whatever the click shape). A click whose answer is
    missing (below 10 % of the click's peak: dropped in an xrun) counts as lost."""
    loud = np.flatnonzero(np.abs(left) > 0.05)
    if loud.size == 0:
        return [], 0
    gap = int(0.5 * period_s * RATE)
    starts = [int(loud[0])] + [int(b) for a, b in zip(loud[:-1], loud[1:]) if b - a > gap]
    delays, lost = [], 0
    w = int(max_delay_s * RATE)
    for s in starts:
        seg_l = left[max(0, s - 50):s + 200]
        pk_l = float(np.max(np.abs(seg_l)))
        on_l = max(0, s - 50) + int(np.flatnonzero(np.abs(seg_l) >= 0.25 * pk_l)[0])
        seg_r = right[on_l:on_l + min(w, int(period_s * RATE * 0.9))]
        if seg_r.size == 0:
            lost += 1
            continue
        pk_r = float(np.max(np.abs(seg_r)))
        if pk_r < 0.1 * pk_l:
            lost += 1
            continue
        on_r = int(np.flatnonzero(np.abs(seg_r) >= 0.25 * pk_r)[0])
        delays.append(1000.0 * on_r / RATE)
    return delays, lost


def input_callbacks(runner: Any) -> int:
    """Capture callbacks so far, from the runner's public rings (0 before they exist)."""
    from rtvc.telemetry import Counter, Role

    rings = runner.home.rings
    return 0 if rings is None else int(rings.totals()[Role.INPUT, Counter.CALLBACKS])


def run_config(srv: Any, tmp: Path, *, voice: str, bypass: bool, block_ms: float, n_clicks: int, period_s: float,
               callback: str, profile: str, device_latency: Any, device_block_ms: float | None = None,
               settle_s: float = 20.0, backend: str = "portaudio") -> dict[str, Any]:
    """One loopback measurement with an in-process :class:`~rtvc.audio.LiveRunner`."""
    import soundfile as sf

    from rtvc.audio import LiveRunner
    from rtvc.engine import Engine, EngineConfig
    from rtvc.params import Params
    from rtvc.sysinfo import cpu_times, steal_share
    from rtvc.voices import VoiceRegistry
    from tests.pulse import Recorder, runner_devices

    reg = VoiceRegistry()
    info = reg.get(voice)
    params = Params().replace(voice=voice, **dict(info.defaults), bypass=bypass, gate_threshold_db=-120.0, gate_floor_margin_db=0.0, gate_confirm_ms=0.0)
    eng = Engine(EngineConfig(device_rate=RATE), registry=reg, params=params)
    # rtvc's pulse client names the remapped devices; PortAudio reaches them through PULSE_SINK / _SOURCE
    devs = runner_devices(backend) or {"input": "rtvc_test_in.monitor", "output": "rtvc_test_ret"}
    runner = LiveRunner(eng, **devs, rate=RATE, block_ms=block_ms, channel=0, backend=backend,
                        callback=callback, profile=profile, device_latency=device_latency,
                        device_block_ms=device_block_ms)
    x, _ = click_train(n_clicks, period_s=period_s, seed=int(block_ms * 10))
    wav = tmp / f"clicks-{voice}-{block_ms}.wav"
    sf.write(wav, x, RATE, subtype="FLOAT")
    rec = Recorder(srv, "rtvc_test_in.monitor", tmp / "loop.raw", rate=RATE, channels=2)
    try:
        runner.start()
        t0 = time.monotonic()
        while input_callbacks(runner) == 0 and time.monotonic() - t0 < 10:
            time.sleep(0.05)
        time.sleep(settle_s)  # the live profile's output margin adapts to the path in the first seconds
        x0 = eng.counters["xruns"]  # what the start and the settling cost
        st0 = dict(runner.stats)
        m0 = runner.summary()["out_margin_blocks"]
        d0 = eng.counters["dropped_blocks"]
        c0 = cpu_times()
        subprocess.run(["paplay", "--device=rtvc_test_src", "--latency-msec=10", str(wav)], env=srv.env,
                       check=True, timeout=600)
        time.sleep(0.5)
        steal = steal_share(c0, cpu_times())
        summ = runner.summary()
    finally:
        runner.stop()
        y = rec.stop()
    delays, lost = measure_delays(y[:, 0], y[:, 1], period_s=period_s)
    d = np.asarray(delays)
    return {
        "voice": voice, "kind": "bypass" if bypass else info.kind, "block_ms": block_ms, "clicks": n_clicks,
        "measured": int(d.size), "lost": int(lost) + max(0, n_clicks - int(d.size) - int(lost)),
        "delay_ms_p50": float(np.percentile(d, 50)) if d.size else None,
        "delay_ms_p99": float(np.percentile(d, 99)) if d.size else None,
        "delay_ms_max": float(d.max()) if d.size else None,
        "delay_ms_min": float(d.min()) if d.size else None,
        "delays_ms": [round(v, 3) for v in delays],
        "algorithmic_latency_ms": summ["algorithmic_latency_ms"],
        "stream_latency_ms": summ["stream_latency_ms"], "xruns": summ["xruns"] - x0,
        "xrun_kinds": {k: summ["runner"][k] - st0[k] for k in ("input_status_flags", "output_status_flags",
                                                               "input_overflows", "output_underflows")},
        "compute_ms_p99": summ["compute_ms_p99"],
        "cpu_steal_share": steal,  # the hypervisor's share of the CPU time while the clicks played
        "dropped_blocks": summ["dropped_blocks"] - d0, "trimmed_ms": 1000.0 * summ["runner"]["trimmed_samples"] / RATE,
        "buffer_age_ms": summ["buffer_age_ms"], "callback": callback, "profile": profile, "backend": backend,
        "settle": {"seconds": settle_s, "xruns": x0, "startup_underflows": summ["runner"]["startup_underflows"]},
        "margin_blocks_start": m0,
        "margin_blocks_end": summ["out_margin_blocks"],
    }


def _plot(results: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if r.get("delays_ms")]
    if not ok:
        return
    fig, axes = plt.subplots(len(ok), 1, figsize=(8, 2.2 * len(ok)), sharex=True, squeeze=False)
    lo = min(min(r["delays_ms"]) for r in ok) - 2
    hi = max(max(r["delays_ms"]) for r in ok) + 2
    bins = np.arange(np.floor(lo), np.ceil(hi) + 0.5, 0.5)
    for ax, r in zip(axes[:, 0], ok):
        ax.hist(r["delays_ms"], bins=bins, color="tab:blue")
        ax.axvline(r["delay_ms_p50"], color="k", lw=1)
        ax.axvline(r["delay_ms_p99"], color="r", lw=1, ls="--")
        ax.set_title(f"{r.get('backend', 'portaudio')}: {r['kind']} ({r['voice']}), {r['block_ms']:g} ms blocks: p50 {r['delay_ms_p50']:.1f}, "
                     f"p99 {r['delay_ms_p99']:.1f}, max {r['delay_ms_max']:.1f} ms (n={r['measured']})", fontsize=9)
    axes[-1, 0].set_xlabel("loopback delay (ms)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _dev_block(spec: str | None, block_ms: float) -> float | None:
    if spec is None:
        return None
    return block_ms / 2 if spec == "half" else float(spec)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="15 clicks per configuration (under a minute)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--clicks", type=int, default=None, help="clicks per configuration (default 200, quick 15)")
    ap.add_argument("--period-ms", type=float, default=150.0, help="time between clicks (ms)")
    ap.add_argument("--callback", choices=("native", "python"), default="native")
    ap.add_argument("--backend", choices=("portaudio", "pulse", "both"), default="both",
                    help="PortAudio through ALSA's pulse plugin, rtvc's own PulseAudio client, or both side by "
                         "side in the same run (default)")
    ap.add_argument("--profile", choices=("live", "gaming"), default="live")
    ap.add_argument("--device-latency", default=None, help="low, high or milliseconds (default: the profile's)")
    ap.add_argument("--device-block", default=None, help="device callback size: ms, or 'half' (of the block)")
    ap.add_argument("--blocks", default="5,10", help="block sizes in ms, comma-separated")
    ap.add_argument("--settle", type=float, default=None,
                    help="seconds the stream runs before the clicks (default 20, quick 2): the live profile's "
                         "output margin adapts to the path meanwhile; its xruns are reported apart")
    ap.add_argument("--dsp-voice", default="higher", help="the DSP voice measured (default higher)")
    ap.add_argument("--server-rt", action="store_true",
                    help="put the PulseAudio server's main thread on SCHED_FIFO 3 (as bench/load.py --server-rt "
                         "and the README's tuning advice; needs root or CAP_SYS_NICE)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out"))
    a = ap.parse_args(argv)
    n_clicks = a.clicks or (15 if a.quick else 200)
    settle_s = a.settle if a.settle is not None else (2.0 if a.quick else 20.0)
    lat: Any = a.device_latency
    if lat is not None and lat not in ("low", "high"):
        lat = float(lat) / 1000.0
    log = sys.stderr
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    import tempfile

    results: list[dict[str, Any]] = []
    missing: list[str] = []
    t_start = time.monotonic()
    server_sched = "SCHED_OTHER nice -11 (PulseAudio's default main thread; I/O threads real-time)"
    with pulse_rig() as srv, tempfile.TemporaryDirectory(prefix="rtvc-loopback-") as td:
        if a.server_rt:
            os.sched_setscheduler(srv.pid, os.SCHED_FIFO, os.sched_param(3))
            server_sched = "main thread SCHED_FIFO 3 (--server-rt)"
        nv = neural_voice()
        kinds: list[tuple[str, bool]] = [("neutral", True), (a.dsp_voice, False)]
        if nv is not None:
            kinds.append((nv, False))
        else:
            missing.append("neural: `rtvc voices` lists no voice of kind 'neural'")
        backends = ("portaudio", "pulse") if a.backend == "both" else (a.backend,)
        if a.callback == "python":
            backends = ("portaudio",)  # the pulse backend's callbacks are native only
        for block_ms, backend, (voice, bypass) in [(float(b), be, k) for b in a.blocks.split(",")
                                                   for be in backends for k in kinds]:
                r = run_config(srv, Path(td), voice=voice, bypass=bypass, block_ms=block_ms, n_clicks=n_clicks,
                               period_s=a.period_ms / 1000.0, callback=a.callback, profile=a.profile,
                               device_latency=lat, device_block_ms=_dev_block(a.device_block, block_ms),
                               settle_s=settle_s, backend=backend)
                print(f"loopback {backend:<9} {r['kind']:<6} {voice:<10} {block_ms:4g} ms: p50 {r['delay_ms_p50']} p99 "
                      f"{r['delay_ms_p99']} max {r['delay_ms_max']} ms, {r['measured']}/{n_clicks} clicks, "
                      f"xruns {r['xruns']} (settling: {r['settle']['xruns']}, before the first block: "
                      f"{r['settle']['startup_underflows']}; {r['xrun_kinds']}), output margin {r['margin_blocks_start']} -> "
                      f"{r['margin_blocks_end']} blocks, stream latency {r['stream_latency_ms']}, CPU steal "
                      f"{'n/a' if r['cpu_steal_share'] is None else format(r['cpu_steal_share'], '.0%')}", file=log, flush=True)
                results.append(r)
    doc = {"benchmark": "loopback", "machine": machine(), "rate_hz": RATE, "server": "PulseAudio null sinks "
           "(private server); backend portaudio: PortAudio's ALSA 'pulse' device; backend pulse: rtvc.audio.pulse",
           "backends": list(backends), "server_scheduling": server_sched,
           "callback": a.callback, "profile": a.profile,
           "device_latency": a.device_latency, "quick": a.quick, "clicks_per_config": n_clicks, "settle_s": settle_s,
           "missing": missing, "wall_s": time.monotonic() - t_start,
           "results": results}
    (out / "loopback.json").write_text(json.dumps(doc, indent=1))
    _plot(results, out / "loopback.png", f"rtvc loopback through PulseAudio ({'/'.join(backends)}, {a.callback} callback)\n{machine()}")
    if a.json:
        print(json.dumps({**doc, "results": [{k: v for k, v in r.items() if k != "delays_ms"} for r in results]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
