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

Noise suppression (``--part suppression``; the ``denoise`` parameter, DeepFilterNet3): each source
utterance under white, pink, fan, keyboard and babble noise (four other sources' speech summed) at
0, 10 and 20 dB SNR, after 1 s of the noise alone, through the engine on ``bypass`` with the
gate open (the suppressor alone), with and without ``denoise``: the SNR of the output against the
clean utterance through the same engine (both aligned by the engine's reported latency: the SNR
gain is out minus in), Whisper tiny.en's word error rate against the text, and DNSMOS P.808.
Then its cost: compute per 10 ms block (p50/p99, 48 kHz device rate) and RTF of the engine with
``neutral`` and ``joe``, denoise off and on, in the same run. The noise-only rows above gain two
columns with ``--part phantom`` (or ``all``): the default gate with the suppressor on, and the gate off with it on
(phantom speech: what the suppressor leaves of noise alone).

    python bench/noise.py [--quick] [--json] [--voices a,b] [--part gate|suppression|all] [--out bench/out]
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

__all__ = ["NOISES", "noise", "rms_db", "speech_share", "run_benchmark", "run_suppression", "suppression_cost",
           "babble", "snr_db", "main"]

RATE = DEVICE_RATE
SECONDS = 6.0
SETTLE_S = 3.0  # the noise floor needs up to 3 s (its window) to be tracked: voice-over-noise lead-in
MEASURE_FROM_S = 4.0  # noise-only rows: the output from here on (floor tracked, gate released)
LEVELS_DBFS = (-50.0, -40.0)
SNRS_DB = (20.0, 10.0, float("inf"))  # inf: the clean voice
GATE_OFF = {"gate_floor_margin_db": 0.0, "gate_confirm_ms": 0.0}  # the fixed threshold alone
OPEN = {"gate_threshold_db": -120.0, "gate_floor_margin_db": 0.0, "gate_confirm_ms": 0.0, "bypass": True}
"""The suppressor alone: the gate never closes and the voice is bypassed (same latency)."""
SUPPRESSION_NOISES = ("white", "pink", "fan", "clicks", "babble")
SUPPRESSION_SNRS_DB = (0.0, 10.0, 20.0)
LEAD_S = 1.0  # noise alone before the voice: the suppressor's estimate settles


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


def babble(n: int, others: Sequence[np.ndarray], rng: np.random.Generator, talkers: int = 4) -> np.ndarray:
    """``n`` samples of ``talkers`` voices at once: utterances of ``others`` (other speakers than the
    one judged), each looped from a random start and at equal RMS, summed."""
    out = np.zeros(n)
    picks = rng.choice(len(others), size=min(talkers, len(others)), replace=False)
    for i in picks:
        x = np.asarray(others[i], np.float64)
        x = x / max(np.sqrt(np.mean(x ** 2)), 1e-9)
        out += np.resize(np.roll(x, int(rng.integers(0, x.size))), n)
    return out


def snr_db(y: np.ndarray, clean: np.ndarray) -> float:
    """SNR of ``y`` against ``clean`` (same length, aligned): clean energy over the difference's."""
    c, d = np.asarray(clean, np.float64), np.asarray(y, np.float64) - clean
    return float(10.0 * np.log10(np.sum(c ** 2) / max(np.sum(d ** 2), 1e-20)))


SETTINGS: dict[str, dict[str, Any]] = {"off": {"denoise": False}, "on": {"denoise": True},
                                       "on20": {"denoise": True, "denoise_limit_db": 20.0}}
"""Noise suppression off, on (no limit), and on with at most 20 dB taken away."""


def run_suppression(sources: Sequence[Any], *, voices: Sequence[str] = ("bypass", "joe"),
                    noises: Sequence[str] = SUPPRESSION_NOISES, snrs: Sequence[float] = SUPPRESSION_SNRS_DB,
                    settings: Sequence[str] | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Per voice, noise and SNR, the means over ``sources`` (English ones for words) of the word
    error rate and DNSMOS, and (``bypass``: the suppressor alone) the output SNR, for each of
    ``settings`` (default: all of :data:`SETTINGS` on ``bypass``, off and on on a voice; see the module
    docstring). ``bypass`` is the ``neutral`` voice bypassed."""
    from bench.quality import dnsmos

    lead = int(LEAD_S * RATE)
    rows = []
    # the clean utterances through the bypassed engine: the SNR reference, needed only for bypass
    clean_out = [convert(np.concatenate([np.zeros(lead, np.float32), s.x]), "neutral", **OPEN)[0]
                 for s in sources] if "bypass" in voices else []
    for v in voices:
        name, extra = ("neutral", OPEN) if v == "bypass" else (v, {k: w for k, w in OPEN.items() if k != "bypass"})
        tags = settings or (tuple(SETTINGS) if v == "bypass" else ("off", "on"))
        english = [s for s in sources if s.text]
        wer_clean = float(np.mean([wer(transcribe(convert(s.x, name, **extra)[0]), s.text) for s in english])) \
            if english else None
        rng = np.random.default_rng(7)  # the same noises for every voice
        for kind in noises:
            for snr in snrs:
                acc: dict[str, list[float]] = {}
                for j, s in enumerate(sources):
                    x = np.concatenate([np.zeros(lead, np.float32), s.x])
                    if kind == "babble":
                        z = babble(x.size, [o.x for o in sources if o.speaker != s.speaker], rng)
                    else:
                        z = NOISES[kind](x.size, rng)
                    z *= np.sqrt(np.mean(s.x.astype(np.float64) ** 2) / np.mean(z[lead:] ** 2)) * 10.0 ** (-snr / 20.0)
                    xn = (x + z).astype(np.float32)
                    for tag in tags:
                        y, _ = convert(xn, name, **extra, **SETTINGS[tag])
                        if v == "bypass":
                            acc.setdefault(f"snr_{tag}", []).append(snr_db(y[lead:], clean_out[j][lead:]))
                        m = dnsmos(y[lead:])
                        for k in ("p808", "sig", "bak"):
                            acc.setdefault(f"dnsmos_{k}_{tag}", []).append(m[k])
                        if s.text:
                            acc.setdefault(f"wer_{tag}", []).append(wer(transcribe(y[lead:]), s.text))
                r = {"voice": v, "noise": kind, "snr_in_db": snr, "n_utterances": len(sources),
                     "wer_clean": wer_clean, **{k: float(np.mean(w)) for k, w in acc.items()},
                     **{f"{k}_median": float(np.median(w)) for k, w in acc.items() if k.startswith("wer_")},
                     "per_utterance": {k: [float(u) for u in w] for k, w in acc.items()}}
                rows.append(r)
                if progress:
                    sys.stderr.write(f"suppression {v} {kind}@{snr:.0f} dB: " + ", ".join(
                        f"{t}: WER {r.get(f'wer_{t}', float('nan')):.3f} SNR {r.get(f'snr_{t}', float('nan')):.1f}"
                        for t in tags) + "\n")
    return rows


def suppression_cost(x: np.ndarray, voices: Sequence[str] = ("neutral", "joe"), *, device_rate: int = 48_000,
                     block_ms: float = 10.0) -> list[dict[str, Any]]:
    """Compute per block (p50/p99/max, ms) and RTF of the engine on ``x`` (16 kHz, resampled to
    ``device_rate``) per voice, noise suppression off and on, alternating in one run."""
    from rtvc.engine import Engine, EngineConfig
    from rtvc.params import Params
    from rtvc.resampling import StreamResampler

    xd = StreamResampler(RATE, device_rate, max_chunk=x.size).process(x.astype(np.float32)).copy()
    block = int(device_rate * block_ms / 1000)
    out = []
    for v in voices:
        for dn in (False, True):
            eng = Engine(EngineConfig(device_rate=device_rate), params=Params(voice=v, denoise=dn))
            eng.warm_up()
            times = []
            for i in range(0, xd.size - block + 1, block):
                t0 = time.perf_counter_ns()
                eng.process(xd[i:i + block])
                times.append((time.perf_counter_ns() - t0) / 1e6)
            t = np.asarray(times[3:])  # the first blocks fill the pipeline
            out.append({"voice": v, "denoise": dn, "blocks": int(t.size), "compute_ms_p50": float(np.percentile(t, 50)),
                        "compute_ms_p99": float(np.percentile(t, 99)), "compute_ms_max": float(t.max()),
                        "rtf": float(np.percentile(t, 50) / block_ms),
                        "algorithmic_latency_ms": float(eng.algorithmic_latency_ms)})
    for r in out:
        base = next(b for b in out if b["voice"] == r["voice"] and not b["denoise"])
        r["p50_ratio_to_off"] = r["compute_ms_p50"] / base["compute_ms_p50"]
    return out


def run_benchmark(voices: Sequence[str], *, sources: Sequence[Any], levels: Sequence[float] = LEVELS_DBFS,
                  noises: Sequence[str] = tuple(NOISES), snrs: Sequence[float] = SNRS_DB,
                  progress: bool = True, denoise: bool = False) -> dict[str, Any]:
    """Noise-only rows (voice x noise x level) and voice-over-noise rows (voice x SNR); with
    ``denoise`` the noise-only rows also with noise suppression on (gate default and off)."""
    settle, measure = int(SETTLE_S * RATE), int(MEASURE_FROM_S * RATE)
    rows = []
    for v in voices:
        for kind in noises:
            for lvl in levels:
                x = noise(kind, lvl)
                r: dict[str, Any] = {"voice": v, "noise": kind, "level_dbfs": lvl,
                                     "input_speech_share": speech_share(x[measure:])}
                runs: list[tuple[str, dict[str, Any]]] = [("on", {}), ("off", GATE_OFF)]
                if denoise:
                    runs += [("dn_on", {"denoise": True}), ("dn_off", {"denoise": True, **GATE_OFF})]
                for tag, changes in runs:
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
    dn = any("out_rms_dbfs_dn_on" in r for r in res.get("noise_only", []))
    if dn:
        lines[0] = lines[0][:-1] + "| with noise suppression: gate on / off | speech-like frames |"
        lines[1] += " --- | --- |"
    db = lambda v: "silence" if v <= -199 else f"{v:.1f} dBFS"  # noqa: E731
    for r in res.get("noise_only", []):
        line = (f"| {r['voice']} | {r['noise']} | {r['level_dbfs']:.0f} dBFS | {db(r['out_rms_dbfs_on'])} | "
                f"{r['out_rms_dbfs_off']:.1f} dBFS | {r['out_speech_share_on']:.2f} / {r['out_speech_share_off']:.2f} "
                f"({r['input_speech_share']:.2f}) |")
        if dn:
            line += (f" {db(r['out_rms_dbfs_dn_on'])} / {db(r['out_rms_dbfs_dn_off'])} | "
                     f"{r['out_speech_share_dn_on']:.2f} / {r['out_speech_share_dn_off']:.2f} |")
        lines.append(line)
    lines += ["", "| voice | SNR | voice energy kept by the gate (mean, min) | WER gate on / off |", "| --- | --- | --- | --- |"]
    for k in res.get("voice_over_noise", []):
        snr = "clean" if k["snr_db"] is None else f"{k['snr_db']:.0f} dB"
        lines.append(f"| {k['voice']} | {snr} | {k['voice_energy_kept']:.4f}, {k['voice_energy_kept_min']:.4f} | "
                     f"{k['wer_on']:.3f} / {k['wer_off']:.3f} |")
    return "\n".join(lines)


def format_suppression(res: dict[str, Any]) -> str:
    rows = res.get("suppression", [])
    tags = [t for t in SETTINGS if any(f"wer_{t}" in r or f"snr_{t}" in r for r in rows)]
    lines = ["Settings: " + ", ".join(f"{t} = {SETTINGS[t]}" for t in tags), "",
             "| voice | noise | input SNR | output SNR " + " / ".join(tags) + " | WER " + " / ".join(tags) +
             " (clean) | DNSMOS P.808 " + " / ".join(tags) + " | DNSMOS BAK " + " / ".join(tags) + " |",
             "| --- | --- | --- | --- | --- | --- | --- |"]

    def cols(r: dict[str, Any], key: str, fmt: str) -> str:
        return " / ".join(format(r[f"{key}_{t}"], fmt) if f"{key}_{t}" in r else "-" for t in tags)

    if not rows:
        lines = []
    for r in rows:
        clean = f" ({r['wer_clean']:.3f})" if r.get("wer_clean") is not None else ""
        lines.append(f"| {r['voice']} | {r['noise']} | {r['snr_in_db']:.0f} dB | {cols(r, 'snr', '.1f')} | "
                     f"{cols(r, 'wer', '.3f')}{clean} | {cols(r, 'dnsmos_p808', '.2f')} | {cols(r, 'dnsmos_bak', '.2f')} |")
    if res.get("cost"):
        lines += ["" if lines else "Noise suppression's cost:", "| voice | noise suppression | compute p50 / p99 / max per 10 ms block | RTF | p50 vs off | algorithmic latency |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for c in res["cost"]:
            lines.append(f"| {c['voice']} | {'on' if c['denoise'] else 'off'} | {c['compute_ms_p50']:.2f} / "
                         f"{c['compute_ms_p99']:.2f} / {c['compute_ms_max']:.2f} ms | {c['rtf']:.3f} | "
                         f"{c['p50_ratio_to_off']:.1f}x | {c['algorithmic_latency_ms']:.1f} ms |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/noise.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--voices", default=None, help="comma-separated voice names (default: neutral and the neural voices)")
    ap.add_argument("--quick", action="store_true", help="one voice, white and fan noise at -40 dBFS, 20 dB SNR, 2 utterances")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--part", choices=("gate", "phantom", "suppression", "cost", "all"), default="gate",
                    help="gate: phantom speech and the gate (default); phantom: the same, the noise-only rows also "
                         "with noise suppression on; suppression: noise suppression on noisy speech and its cost; "
                         "cost: its cost only; all: phantom and suppression")
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
        res: dict[str, Any] = {}
        if a.part in ("gate", "phantom", "all"):
            kw: dict[str, Any] = dict(levels=(-40.0,), noises=("white", "fan"), snrs=(20.0,)) if a.quick else {}
            res.update(run_benchmark(voices, sources=sources, progress=not a.json, denoise=a.part in ("phantom", "all"), **kw))
        if a.part in ("suppression", "all"):
            skw: dict[str, Any] = dict(noises=("white", "babble"), snrs=(5.0,), voices=("bypass",)) if a.quick else {}
            res["suppression"] = run_suppression(sources, progress=not a.json, **skw)
        if a.part in ("suppression", "cost", "all"):
            res["cost"] = suppression_cost(np.concatenate([s.x for s in sources])[:int((3 if a.quick else 20) * RATE)])
    except RtvcError as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    res["meta"] = {"block": BLOCK, "device_rate": DEVICE_RATE, "seconds": SECONDS, "settle_s": SETTLE_S,
                   "measure_from_s": MEASURE_FROM_S,
                   "machine": _machine(), "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "quick": a.quick, "part": a.part, "sources": [s.name for s in sources], "lead_s": LEAD_S}
    table = "\n\n".join(t for t in (format_table(res) if "noise_only" in res else "",
                                      format_suppression(res) if "cost" in res else "") if t)
    write_result(res, Path(a.out), "noise" if a.part == "gate" else f"noise-{a.part}", table, as_json=a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
