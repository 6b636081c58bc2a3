"""Phantom speech: what each voice makes of noise alone, and what the gate keeps of a voice over
noise.

Noise-only inputs (white, pink, a fan's rumble with mains hum, keyboard-like clicks) at -50 and
-40 dBFS RMS, 6 s each, go through the streaming engine (10 ms blocks, as ``bench/quality.py``)
with the default gate (the noise-floor margin ``gate_floor_margin_db`` and the click test
``gate_confirm_ms``) and with both off (:data:`GATE_OFF`: the fixed -60 dBFS threshold only).
Per voice and noise the table gives the output RMS over the last 2 s (after the
floor has been tracked and the gate has released) and the share of 30 ms output frames that WebRTC's voice activity
detector (aggressiveness 3) calls speech: noise a voice turns into speech-like sound scores high
there. Then voice over noise: each source utterance of ``bench/quality.py`` after 3 s of white
noise, at 20 and 10 dB SNR, and clean (after 3 s of digital silence: what the click test costs a
voice's onsets): the share of the voice's energy (frames within 40 dB of its loudest) that the
default gate keeps, against the gate off, and the word error rate (Whisper tiny.en; pocketsphinx
before 2026-12-07) with and without it.

    python bench/noise.py [--quick] [--json] [--voices a,b] [--out bench/out]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from bench.quality import (BLOCK, DEFAULT_SOURCES, DEVICE_RATE, QUICK_SOURCES, _machine,  # noqa: E402
                           convert, select_sources, transcribe, wer, write_result)

__all__ = ["NOISES", "noise", "rms_db", "speech_share", "run_benchmark", "main"]

RATE = DEVICE_RATE
SECONDS = 6.0
SETTLE_S = 3.0  # the noise floor needs up to 3 s (its window) to be tracked: voice-over-noise lead-in
MEASURE_FROM_S = 4.0  # noise-only rows: the output from here on (floor tracked, gate released)
LEVELS_DBFS = (-50.0, -40.0)
SNRS_DB = (20.0, 10.0, float("inf"))  # inf: the clean voice
GATE_OFF = {"gate_floor_margin_db": 0.0, "gate_confirm_ms": 0.0}  # the fixed threshold alone


def _white(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(n)


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    f = np.fft.rfft(rng.standard_normal(n))
    f /= np.sqrt(np.maximum(np.arange(f.size), 1))
    return np.fft.irfft(f, n)


def _fan(n: int, rng: np.random.Generator) -> np.ndarray:
    """Rumble (noise low-passed at 300 Hz) with 100 and 200 Hz hum: a fan or a PC beside the mic."""
    f = np.fft.rfft(rng.standard_normal(n))
    f /= 1.0 + (np.fft.rfftfreq(n, 1.0 / RATE) / 300.0) ** 2
    x = np.fft.irfft(f, n)
    t = np.arange(n) / RATE
    return x / x.std() + 0.5 * np.sin(2 * np.pi * 100 * t) + 0.3 * np.sin(2 * np.pi * 200 * t)


def _clicks(n: int, rng: np.random.Generator) -> np.ndarray:
    """Keyboard-like: 5 short decaying bursts a second at random times."""
    x = np.zeros(n)
    for t0 in rng.integers(0, n - 800, int(5 * n / RATE)):
        x[t0:t0 + 400] += rng.standard_normal(400) * np.exp(-np.arange(400) / 60.0)
    return x


NOISES: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "white": _white, "pink": _pink, "fan": _fan, "clicks": _clicks}


def noise(kind: str, level_dbfs: float, seconds: float = SECONDS, seed: int = 0) -> np.ndarray:
    """``seconds`` of noise ``kind`` (one of :data:`NOISES`) at RMS ``level_dbfs``, float32."""
    x = NOISES[kind](int(seconds * RATE), np.random.default_rng(seed))
    return (x / np.sqrt(np.mean(x ** 2)) * 10.0 ** (level_dbfs / 20.0)).astype(np.float32)


def rms_db(y: np.ndarray) -> float:
    """RMS in dBFS; -200 for digital silence."""
    ms = float(np.mean(np.asarray(y, np.float64) ** 2))
    return 10.0 * np.log10(ms) if ms > 1e-20 else -200.0


def speech_share(y: np.ndarray) -> float:
    """Share of 30 ms frames that WebRTC's VAD (aggressiveness 3) calls speech."""
    import webrtcvad

    vad = webrtcvad.Vad(3)
    pcm = (np.clip(y, -1.0, 1.0) * 32767).astype(np.int16)
    n = int(0.03 * RATE)
    frames = [pcm[i:i + n].tobytes() for i in range(0, len(pcm) - n + 1, n)]
    return float(np.mean([vad.is_speech(f, RATE) for f in frames])) if frames else 0.0


def _frame_energy(x: np.ndarray, n: int = 160) -> np.ndarray:
    m = x.size // n
    return (np.asarray(x[:m * n], np.float64).reshape(m, n) ** 2).sum(1)


def run_benchmark(voices: Sequence[str], *, sources: Sequence[Any], levels: Sequence[float] = LEVELS_DBFS,
                  noises: Sequence[str] = tuple(NOISES), snrs: Sequence[float] = SNRS_DB,
                  progress: bool = True) -> dict[str, Any]:
    """Noise-only rows (voice x noise x level) and voice-over-noise rows (voice x SNR)."""
    settle, measure = int(SETTLE_S * RATE), int(MEASURE_FROM_S * RATE)
    rows = []
    for v in voices:
        for kind in noises:
            for lvl in levels:
                x = noise(kind, lvl)
                r: dict[str, Any] = {"voice": v, "noise": kind, "level_dbfs": lvl,
                                     "input_speech_share": speech_share(x[measure:])}
                for tag, changes in (("on", {}), ("off", GATE_OFF)):
                    y, _ = convert(x, v, **changes)
                    r[f"out_rms_dbfs_{tag}"] = rms_db(y[measure:])
                    r[f"out_speech_share_{tag}"] = speech_share(y[measure:])
                rows.append(r)
                if progress:
                    sys.stderr.write(f"{v} {kind}@{lvl:.0f}: on {r['out_rms_dbfs_on']:.1f} dBFS, "
                                     f"off {r['out_rms_dbfs_off']:.1f} dBFS\n")
    kept = []
    rng = np.random.default_rng(1)
    for v in voices:
        for snr in snrs:
            ratios, w_on, w_off = [], [], []
            for s in sources:
                x = np.concatenate([np.zeros(settle, np.float32), s.x])
                gain = np.sqrt(np.mean(s.x.astype(np.float64) ** 2)) * 10.0 ** (-snr / 20.0)
                xn = (x + gain * rng.standard_normal(x.size)).astype(np.float32)
                on, _ = convert(xn, v)
                off, _ = convert(xn, v, **GATE_OFF)
                e = _frame_energy(s.x)
                loud = e > e.max() * 1e-4  # within 40 dB of the loudest 10 ms
                e_on, e_off = _frame_energy(on[settle:])[:e.size], _frame_energy(off[settle:])[:e.size]
                ratios.append(float(e_on[loud].sum() / max(e_off[loud].sum(), 1e-20)))
                w_on.append(wer(transcribe(on[settle:]), s.text))
                w_off.append(wer(transcribe(off[settle:]), s.text))
            kept.append({"voice": v, "snr_db": None if snr == float("inf") else snr,  # None: clean
                         "voice_energy_kept": float(np.mean(ratios)),
                         "voice_energy_kept_min": float(np.min(ratios)), "wer_on": float(np.mean(w_on)),
                         "wer_off": float(np.mean(w_off)), "n_utterances": len(ratios)})
    return {"noise_only": rows, "voice_over_noise": kept}


def format_table(res: dict[str, Any]) -> str:
    lines = ["| voice | noise | level | output, gate on (default) | output, gate off (fixed threshold) | speech-like frames on / off (input) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in res["noise_only"]:
        on = "silence" if r["out_rms_dbfs_on"] <= -199 else f"{r['out_rms_dbfs_on']:.1f} dBFS"
        lines.append(f"| {r['voice']} | {r['noise']} | {r['level_dbfs']:.0f} dBFS | {on} | {r['out_rms_dbfs_off']:.1f} dBFS | "
                     f"{r['out_speech_share_on']:.2f} / {r['out_speech_share_off']:.2f} ({r['input_speech_share']:.2f}) |")
    lines += ["", "| voice | SNR | voice energy kept by the gate (mean, min) | WER gate on / off |", "| --- | --- | --- | --- |"]
    for k in res["voice_over_noise"]:
        snr = "clean" if k["snr_db"] is None else f"{k['snr_db']:.0f} dB"
        lines.append(f"| {k['voice']} | {snr} | {k['voice_energy_kept']:.4f}, {k['voice_energy_kept_min']:.4f} | "
                     f"{k['wer_on']:.3f} / {k['wer_off']:.3f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/noise.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--voices", default=None, help="comma-separated voice names (default: neutral and the neural voices)")
    ap.add_argument("--quick", action="store_true", help="one voice, white and fan noise at -40 dBFS, 20 dB SNR, 2 utterances")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--out", default=str(_ROOT / "bench" / "out"))
    a = ap.parse_args(list(argv) if argv is not None else None)

    from rtvc.errors import RtvcError
    from rtvc.voices import VoiceRegistry

    try:
        if a.voices:
            voices = [v.strip() for v in a.voices.split(",") if v.strip()]
        else:
            neural = [v.name for v in VoiceRegistry().list() if v.kind == "neural"]
            voices = (["neutral"] + neural)[:1 if a.quick else None]
        sources = select_sources(QUICK_SOURCES if a.quick else DEFAULT_SOURCES, 1)
        kw: dict[str, Any] = dict(levels=(-40.0,), noises=("white", "fan"), snrs=(20.0,)) if a.quick else {}
        res = run_benchmark(voices, sources=sources, progress=not a.json, **kw)
    except RtvcError as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    res["meta"] = {"block": BLOCK, "device_rate": DEVICE_RATE, "seconds": SECONDS, "settle_s": SETTLE_S,
                   "measure_from_s": MEASURE_FROM_S,
                   "machine": _machine(), "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "quick": a.quick, "sources": [s.name for s in sources]}
    write_result(res, Path(a.out), "noise", format_table(res), as_json=a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
