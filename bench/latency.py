"""Latency and compute benchmark: every voice, 5 ms and 10 ms host blocks, beside pedalboard.

For each voice (DSP presets and installed neural voices) and block size it reports:
- algorithmic latency (from the engine's config, and measured with a click through the
  neutral path),
- compute per block p50 / p99 / max in ms and the real-time factor (total compute / audio
  time), on one thread,
and, in the same run on the same audio and block size, pedalboard's ``PitchShift`` (Rubber
Band): its RTF and its delay measured with a click.

    python bench/latency.py [--quick] [--json] [--rate 48000] [--out bench/out] [--neural-device cuda]

``--neural-device cuda`` runs the neural voices' model on onnxruntime-gpu's CUDA provider (the
rest of the hop stays on one CPU thread); every row names the providers that really ran.

Writes ``latency.json`` and ``latency.png`` into ``--out``; ``--json`` prints the JSON object.
"""

from __future__ import annotations

import os

for _v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # one thread, as the figures claim

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def _machine() -> str:
    """The machine, named in every figure."""
    from rtvc.sysinfo import machine_description

    return machine_description()


def test_audio(rate: int, seconds: float) -> np.ndarray:
    """The bundled speech sample if present (looped to length), else a seeded voiced signal."""
    sample = Path(__file__).resolve().parent.parent / "rtvc" / "data" / "sample.wav"
    n = int(rate * seconds)
    if sample.exists():
        from rtvc.wavio import read_audio

        x, sr = read_audio(sample)
        if sr != rate:
            import soxr

            x = soxr.resample(x, sr, rate).astype(np.float32)
        return np.resize(x, n).astype(np.float32)
    rng = np.random.default_rng(0)
    t = np.arange(n) / rate
    f = 130 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    ph = 2 * np.pi * np.cumsum(f) / rate
    x = sum(np.sin(k * ph) / k for k in range(1, 25))
    return (0.2 * x / np.max(np.abs(x)) + 0.002 * rng.standard_normal(n)).astype(np.float32)


def stats_ms(times_ns: np.ndarray, block: int, rate: int) -> dict[str, float]:
    t = times_ns / 1e6
    block_ms = 1000.0 * block / rate
    return {"compute_ms_p50": float(np.percentile(t, 50)), "compute_ms_p99": float(np.percentile(t, 99)),
            "compute_ms_max": float(t.max()), "rtf": float(t.sum() / (block_ms * len(t))),
            "rtf_p99": float(np.percentile(t, 99) / block_ms)}


def bench_voice(name: str, x: np.ndarray, rate: int, block: int, neural_device: str = "cpu") -> dict:
    from rtvc.engine import Engine, EngineConfig
    from rtvc.params import Params

    eng = Engine(EngineConfig(device_rate=rate, neural_device=neural_device),
                 params=Params(voice="neutral", gate_threshold_db=-120.0, gate_floor_margin_db=0.0, gate_confirm_ms=0.0))
    eng.update(voice=name)
    y = np.zeros(block, np.float32)
    warm = x[: 50 * block]
    for s in range(0, len(warm) - block + 1, block):  # JIT/ONNX warm-up and state settle
        eng.process_into(warm[s:s + block], y)
    provider = eng.voice_provider  # after the warm-up: the voice is switched in by the first block
    n_blocks = len(x) // block
    times = np.zeros(n_blocks, np.int64)
    for b in range(n_blocks):
        seg = x[b * block:(b + 1) * block]
        t0 = time.perf_counter_ns()
        eng.process_into(seg, y)
        times[b] = time.perf_counter_ns() - t0
    return {"voice": name, "kind": eng.registry.get(name).kind, "providers": [provider] if provider else [],
            "block_ms": 1000.0 * block / rate,
            "algorithmic_latency_ms": eng.algorithmic_latency_ms, **stats_ms(times, block, rate),
            "dropped_blocks": eng.counters["dropped_blocks"], "nonfinite_samples": eng.counters["nonfinite_samples"]}


def measured_click_latency(rate: int) -> float:
    """Click through the neutral voice; the peak's position in device samples -> ms."""
    from rtvc.engine import Engine, EngineConfig
    from rtvc.params import Params

    eng = Engine(EngineConfig(device_rate=rate), params=Params(voice="neutral", gate_threshold_db=-120.0, gate_floor_margin_db=0.0, gate_confirm_ms=0.0))
    x = np.zeros(rate // 2, np.float32)
    n0 = rate // 10
    x[n0] = 1.0
    y = eng.process(x)
    return 1000.0 * (int(np.argmax(np.abs(y))) - n0) / rate


def bench_pedalboard(x: np.ndarray, rate: int, block: int, semitones: float) -> dict | None:
    try:
        import pedalboard
    except ImportError:
        return None
    ps = pedalboard.PitchShift(semitones=semitones)
    y = np.zeros(0)
    n_blocks = len(x) // block
    times = np.zeros(n_blocks, np.int64)
    for b in range(n_blocks):
        seg = x[b * block:(b + 1) * block][None, :]
        t0 = time.perf_counter_ns()
        ps.process(seg, rate, buffer_size=block, reset=False)
        times[b] = time.perf_counter_ns() - t0
    # delay: a click through a fresh instance, streamed in the same block size. pedalboard
    # returns nothing until its internal buffer fills; a real-time host plays silence then, so
    # the missing samples count as leading silence.
    ps = pedalboard.PitchShift(semitones=semitones)
    click = np.zeros(5 * rate, np.float32)
    n0 = 2 * rate
    click[n0] = 1.0
    outs = [ps.process(click[s:s + block][None, :], rate, buffer_size=block, reset=False)[0]
            for s in range(0, len(click) - block + 1, block)]
    y = np.concatenate(outs)
    n_in = (len(click) // block) * block
    buffering_ms = 1000.0 * (n_in - len(y)) / rate  # samples held back: silence a live host plays
    y = np.concatenate([np.zeros(n_in - len(y), np.float32), y])
    env = np.abs(y)
    if env.max() > 1e-4:
        delay_ms, note = 1000.0 * (int(np.argmax(env)) - n0) / rate, ""
    else:  # spotify/pedalboard#415: streaming PitchShift (reset=False) outputs only zeros
        delay_ms, note = None, "streaming output was all zeros (spotify/pedalboard#415); delay >= buffering_ms"
    return {"peer": "pedalboard.PitchShift", "semitones": semitones, "block_ms": 1000.0 * block / rate,
            "delay_ms_click": delay_ms, "buffering_ms": buffering_ms, "note": note,
            "version": pedalboard.__version__, **stats_ms(times[5:], block, rate)}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["voices"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, label in ((axes[0], "algorithmic_latency_ms", "latency (ms)"), (axes[1], "rtf", "real-time factor")):
        for bi, bms in enumerate(sorted({r["block_ms"] for r in rows})):
            sel = [r for r in rows if r["block_ms"] == bms]
            xs = np.arange(len(sel)) + bi * 0.4
            ax.bar(xs, [r[key] for r in sel], width=0.4, label=f"rtvc, {bms:g} ms blocks")
            ax.set_xticks(np.arange(len(sel)) + 0.2, [r["voice"] for r in sel], rotation=45, ha="right")
        for p in result["peers"]:
            if key == "algorithmic_latency_ms":
                continue  # ~1 s: off the scale; quoted in the table instead
            ax.axhline(p["rtf"], ls="--", color="k" if p["block_ms"] > 7 else "gray",
                       label=f"pedalboard PitchShift, {p['block_ms']:g} ms blocks")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.suptitle(f"rtvc latency/compute, {result['rate']} Hz device rate, 1 thread\n{result['machine']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short audio, under a minute")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--rate", type=int, default=48000, help="device rate (Hz)")
    ap.add_argument("--voices", default="", help="comma-separated subset (default: all)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    from rtvc.types import NEURAL_DEVICES

    ap.add_argument("--neural-device", choices=NEURAL_DEVICES, default="cpu",
                    help="where the neural voices' model runs (default cpu, one thread)")
    args = ap.parse_args(argv)
    from rtvc.voices import VoiceRegistry

    seconds = 4.0 if args.quick else 30.0
    x = test_audio(args.rate, seconds)
    names = [v.name for v in VoiceRegistry().list()]
    if args.voices:
        names = [n for n in names if n in args.voices.split(",")]
    result: dict = {"machine": _machine(), "rate": args.rate, "model_rate": 16000, "threads": 1,
                    "audio_seconds": seconds, "neural_device": args.neural_device, "voices": [], "peers": []}
    result["measured_click_latency_ms"] = measured_click_latency(args.rate)
    log = sys.stderr
    for block_ms in (5.0, 10.0):
        block = int(round(args.rate * block_ms / 1000))
        for i, name in enumerate(names):
            print(f"[{block_ms:g} ms] {i + 1}/{len(names)} {name}", file=log, flush=True)
            result["voices"].append(bench_voice(name, x, args.rate, block, args.neural_device))
        peer = bench_pedalboard(x, args.rate, block, semitones=4.0)
        if peer is not None:
            result["peers"].append(peer)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latency.json").write_text(json.dumps(result, indent=2))
    plot(result, args.out / "latency.png")
    if args.json:
        print(json.dumps(result))
    else:
        print(f"machine: {result['machine']}\ndevice rate {args.rate} Hz, model rate 16000 Hz, 1 thread; "
              f"click through neutral measured {result['measured_click_latency_ms']:.3f} ms")
        print(f"neural voices on: {args.neural_device}")
        print(f"{'voice':18s} {'kind':7s} {'block':>6s} {'latency':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s} {'RTF':>7s}")
        for r in result["voices"]:
            print(f"{r['voice']:18s} {r['kind']:7s} {r['block_ms']:6g} {r['algorithmic_latency_ms']:8.2f} "
                  f"{r['compute_ms_p50']:8.3f} {r['compute_ms_p99']:8.3f} {r['compute_ms_max']:8.3f} {r['rtf']:7.4f}")
        for p in result["peers"]:
            d = p["delay_ms_click"] if p["delay_ms_click"] is not None else p["buffering_ms"]
            print(f"{'pedalboard +4 st':18s} {'peer':7s} {p['block_ms']:6g} {d:8.2f} "
                  f"{p['compute_ms_p50']:8.3f} {p['compute_ms_p99']:8.3f} {p['compute_ms_max']:8.3f} {p['rtf']:7.4f}")
        for p in result["peers"]:
            if p["note"]:
                print(f"note (pedalboard {p['version']}, {p['block_ms']:g} ms): {p['note']}")
        print(f"wrote {args.out / 'latency.json'} and {args.out / 'latency.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
