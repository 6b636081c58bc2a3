"""Peak memory of ``rtvc convert`` against the file's length: it must not grow with it.

For each length, a mono PCM16 WAV of silence (what a long idle recording is) is written block by
block at ``--rate``, then converted by ``rtvc convert`` in a fresh process whose own peak RSS
(``ru_maxrss``) is reported with its wall time. The figure that matters is the difference between
the longest and the shortest file (issue 28's target: 2 hours at 48 kHz within 100 MB of a
1-minute file).

    python bench/convert_memory.py [--rate 48000] [--minutes 1,120] [--voice joe] [--json] [--out bench/out]

Writes ``convert_memory.json`` into ``--out``. The generated files (about 5.8 MB a minute at
48 kHz) live in a temporary folder and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
TARGET_MB = 100.0

_CHILD = ("import resource, sys\nfrom rtvc.cli import main\nrc = main(sys.argv[1:])\n"
          "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\nsys.exit(rc)")


def write_silence(path: Path, *, rate: int, minutes: float) -> None:
    block = np.zeros(rate, np.float32)
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as f:
        for _ in range(int(round(minutes * 60))):
            f.write(block)


def convert_peak(src: Path, dst: Path, *, voice: str) -> dict:
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", _CHILD, "convert", str(src), str(dst), "--voice", voice, "--json"],
                       capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"bench/convert_memory.py: rtvc convert exited {r.returncode}:\n{r.stderr[-2000:]}")
    lines = r.stdout.strip().splitlines()
    kb = int(next(ln for ln in lines if ln.startswith("MAXRSS_KB")).split()[1])
    info = json.loads(next(ln for ln in lines if ln.startswith("{")))
    return {"peak_rss_mb": kb / 1024.0, "wall_s": wall, "duration_s": info["duration_s"], "rtf": info["rtf"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=48000)
    ap.add_argument("--minutes", default="1,120", help="comma-separated file lengths in minutes (default 1,120)")
    ap.add_argument("--voice", default="joe")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args(argv)
    lengths = sorted(float(m) for m in args.minutes.split(","))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in lengths:
            src, dst = Path(tmp) / f"in_{minutes:g}.wav", Path(tmp) / "out.wav"
            write_silence(src, rate=args.rate, minutes=minutes)
            row = {"minutes": minutes, "file_mb": src.stat().st_size / 1e6, **convert_peak(src, dst, voice=args.voice)}
            rows.append(row)
            src.unlink()
            print(f"{minutes:8g} min  file {row['file_mb']:8.1f} MB  peak RSS {row['peak_rss_mb']:7.1f} MB  "
                  f"wall {row['wall_s']:7.1f} s  RTF {row['rtf']:.3f}", file=sys.stderr)
    growth = rows[-1]["peak_rss_mb"] - rows[0]["peak_rss_mb"]
    result = {"bench": "convert_memory", "rate": args.rate, "voice": args.voice, "rows": rows,
              "growth_mb": growth, "target_mb": TARGET_MB, "met": growth <= TARGET_MB,
              "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "convert_memory.json").write_text(json.dumps(result, indent=1))
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"peak RSS growth {rows[0]['minutes']:g} -> {rows[-1]['minutes']:g} min: {growth:+.1f} MB "
              f"(target <= {TARGET_MB:g} MB: {'met' if result['met'] else 'NOT met'})")
    return 0 if result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
