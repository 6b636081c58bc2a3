"""Micro-benchmark of the causal F0 tracker: per-hop cost, old kernel against the current one.

Both trackers see the same 80-sample hops (16 kHz) in the same run, interleaved hop by hop (the
order alternates every hop, so a noisy neighbour on the machine hits both alike):

- **old**: a verbatim copy of the first YIN difference kernel (lags innermost, read backwards,
  which Numba's LLVM does not vectorise), driven as the first ``CausalF0.step`` was (NumPy
  history shift, then ``yin_frame``);
- **new**: :class:`rtvc.f0.CausalF0` as shipped (``yin_step``: in-kernel shift, float64 history,
  vectorised difference).

Signals: the bundled speech sample (``rtvc/data/sample.wav``) and seeded white noise at the same
length (0.3 RMS). Per signal it reports the per-hop compute p50 / p99 / max in microseconds and
the old/new ratios, the p50 per frame class (silent: skipped by the level gate; voiced; unvoiced),
and whether both trackers returned identical F0 and periodicity on every hop (they should: the
new kernel does the same float64 operations in the same order).

    python bench/f0_speed.py [--quick] [--json] [--repeats N] [--out bench/out]

Writes ``f0_speed.json`` into ``--out``; ``--json`` prints the JSON object. ``--quick`` (one pass
over 3 s of each signal) takes a few seconds after the Numba compile.
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
from numba import njit

from rtvc._native.f0 import yin_cmndf, yin_pick  # unchanged since the first version

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "rtvc" / "data" / "sample.wav"
RATE = 16_000


# ---------------------------------------------------------------- the old kernel (copied, not imported)
@njit(cache=True, nogil=True)
def old_yin_difference(x: np.ndarray, tau_max: int, d: np.ndarray) -> None:
    """The first difference kernel, verbatim: float32 frame, lags innermost and read backwards."""
    n = x.shape[0]
    for tau in range(tau_max + 1):
        d[tau] = 0.0
    for j in range(tau_max, n):
        xj = np.float64(x[j])
        for tau in range(1, tau_max + 1):
            v = xj - np.float64(x[j - tau])
            d[tau] += v * v


@njit(cache=True, nogil=True)
def old_yin_frame(x: np.ndarray, tau_min: int, tau_max: int, threshold: float, silence_ms: float,
                  sample_rate: float, d: np.ndarray, cmndf: np.ndarray) -> tuple[float, float]:
    """The first ``yin_frame``: level gate, old difference, then the (unchanged) CMNDF and pick."""
    n = x.shape[0]
    ms = 0.0
    for j in range(tau_max, n):
        ms += np.float64(x[j]) * np.float64(x[j])
    ms /= max(1, n - tau_max)
    if not ms >= silence_ms:
        return 0.0, 0.0
    old_yin_difference(x, tau_max, d)
    yin_cmndf(d, cmndf)
    lag, per, voiced = yin_pick(cmndf, tau_min, tau_max, threshold)
    if not voiced or lag <= 0.0:
        return 0.0, per
    return sample_rate / lag, per


class OldF0:
    """The first ``CausalF0.step``: NumPy shift of a float32 history, then the old frame kernel."""

    def __init__(self, ref) -> None:
        self.ref = ref  # a CausalF0 for the settings

    def init_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r = self.ref
        return (np.zeros(r.frame_len, np.float32), np.zeros(r.tau_max + 1), np.zeros(r.tau_max + 1))

    def step(self, x: np.ndarray, state) -> tuple[tuple[float, float], tuple]:
        r = self.ref
        if x.shape != (r.hop,):
            raise ValueError(f"shape {x.shape}")
        fr, d, c = state
        h = r.hop
        fr[:-h] = fr[h:]
        fr[-h:] = x
        f, p = old_yin_frame(fr, r.tau_min, r.tau_max, r.threshold, r.silence_ms, float(r.sample_rate), d, c)
        return (f, p), state


# ---------------------------------------------------------------- measurement
def _machine() -> str:
    from rtvc.sysinfo import machine_description

    return machine_description()


def signals(seconds: float | None) -> dict[str, np.ndarray]:
    """Speech (the bundled sample, at 16 kHz) and seeded white noise of the same length."""
    from rtvc.wavio import read_audio

    x, sr = read_audio(SAMPLE)
    if sr != RATE:
        import soxr

        x = soxr.resample(x, sr, RATE)
    x = np.asarray(x, np.float32)
    if seconds is not None:
        x = np.resize(x, int(seconds * RATE))
    noise = (0.3 * np.random.default_rng(0).standard_normal(x.shape[0])).astype(np.float32)
    return {"speech": x, "white_noise": noise}


def run_signal(x: np.ndarray, repeats: int) -> dict:
    from rtvc.f0 import CausalF0

    new = CausalF0()
    old = OldF0(new)
    hop = new.hop
    n_hops = x.shape[0] // hop
    t_old = np.zeros((repeats, n_hops), np.int64)
    t_new = np.zeros((repeats, n_hops), np.int64)
    out_old = np.zeros((n_hops, 2))
    out_new = np.zeros((n_hops, 2))
    clock = time.perf_counter_ns
    for r in range(repeats):
        so, sn = old.init_state(), new.init_state()
        for i in range(n_hops):
            blk = x[i * hop:(i + 1) * hop]
            if (i + r) % 2 == 0:
                t0 = clock()
                po, so = old.step(blk, so)
                t1 = clock()
                pn, sn = new.step(blk, sn)
                t2 = clock()
                t_old[r, i], t_new[r, i] = t1 - t0, t2 - t1
            else:
                t0 = clock()
                pn, sn = new.step(blk, sn)
                t1 = clock()
                po, so = old.step(blk, so)
                t2 = clock()
                t_new[r, i], t_old[r, i] = t1 - t0, t2 - t1
            out_old[i] = po
            out_new[i] = pn
    us_old = t_old.ravel() / 1e3
    us_new = t_new.ravel() / 1e3
    cls = np.where((out_old[:, 0] == 0.0) & (out_old[:, 1] == 0.0), "silent",
                   np.where(out_old[:, 0] > 0.0, "voiced", "unvoiced"))
    cls = np.tile(cls, repeats)

    def q(a: np.ndarray) -> dict:
        return {"p50_us": float(np.percentile(a, 50)), "p99_us": float(np.percentile(a, 99)),
                "max_us": float(a.max()), "mean_us": float(a.mean())}

    res = {
        "hops": int(n_hops), "repeats": int(repeats),
        "old": q(us_old), "new": q(us_new),
        "ratio_p50": float(np.percentile(us_old, 50) / np.percentile(us_new, 50)),
        "ratio_p99": float(np.percentile(us_old, 99) / np.percentile(us_new, 99)),
        "ratio_mean": float(us_old.mean() / us_new.mean()),
        "by_class_p50_us": {},
        "identical_output": bool(np.array_equal(out_old, out_new)),
        "differing_hops": int(np.sum(np.any(out_old != out_new, axis=1))),
    }
    for c in ("silent", "voiced", "unvoiced"):
        m = cls == c
        if m.any():
            res["by_class_p50_us"][c] = {"share": float(m.mean()), "old": float(np.percentile(us_old[m], 50)),
                                         "new": float(np.percentile(us_new[m], 50))}
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one pass over 3 s per signal")
    ap.add_argument("--json", action="store_true", help="print the JSON result")
    ap.add_argument("--repeats", type=int, default=None, help="passes over each signal (default 3; 1 with --quick)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    if repeats < 1:
        print(f"--repeats={repeats}: expected >= 1", file=sys.stderr)
        return 2
    sigs = signals(3.0 if args.quick else None)
    # compile and warm both paths before timing
    warm = sigs["speech"][:4000]
    run_signal(warm, 1)
    result = {
        "benchmark": "f0_speed",
        "machine": _machine(),
        "threads": 1,
        "sample_rate_hz": RATE,
        "hop": 80,
        "settings": "CausalF0 defaults: window 320, fmin 60 Hz (tau_max 267), fmax 600 Hz, frame 587 samples",
        "quick": bool(args.quick),
        "signals": {},
    }
    for name, x in sigs.items():
        print(f"[f0_speed] {name}: {x.shape[0] / RATE:.1f} s x {repeats}", file=sys.stderr)
        result["signals"][name] = run_signal(x, repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "f0_speed.json"
    path.write_text(json.dumps(result, indent=1))
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"machine: {result['machine']}; 16 kHz, hop 80, 1 thread")
        print(f"{'signal':<12} {'old p50':>8} {'new p50':>8} {'x p50':>6} {'old p99':>8} {'new p99':>8} {'x p99':>6}"
              f"  identical")
        for name, r in result["signals"].items():
            print(f"{name:<12} {r['old']['p50_us']:8.1f} {r['new']['p50_us']:8.1f} {r['ratio_p50']:6.2f} "
                  f"{r['old']['p99_us']:8.1f} {r['new']['p99_us']:8.1f} {r['ratio_p99']:6.2f}  {r['identical_output']}")
            for c, v in r["by_class_p50_us"].items():
                print(f"  {c:<10} {100 * v['share']:5.1f} % of hops: p50 old {v['old']:.1f} us, new {v['new']:.1f} us")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
