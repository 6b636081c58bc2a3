"""Start-up cost of the everyday commands, against importing NumPy in the same run.

Each command runs as a fresh process (as a user starts it), the commands interleaved round by
round so that a noisy neighbour on the machine hits all of them alike:

- ``python -c "import numpy"``: the reference (the CLI needs NumPy for everything else);
- ``python -m rtvc --help``, ``python -m rtvc voices --json``, ``python -m rtvc devices --json``,
  ``python -m rtvc presets list``;
- ``python -c "import rtvc.cli"``: the import alone, and which heavy modules it loaded (numba,
  onnxruntime, sounddevice, torch, librosa, scipy must not be among them).

Per command: wall time min / p50 / max in ms and the p50's ratio to the reference. The target
(issue 27): ``rtvc --help`` within 2x of importing NumPy.

    python bench/startup.py [--runs N] [--json] [--out bench/out]

Writes ``startup.json`` into ``--out``; ``--json`` prints it. Commands run from an empty
temporary folder with this interpreter, one thread for the numeric libraries.
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

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("numba", "onnxruntime", "sounddevice", "torch", "librosa", "scipy")
TARGET_HELP_RATIO = 2.0

COMMANDS: dict[str, list[str]] = {
    "import numpy": ["-c", "import numpy"],
    "rtvc --help": ["-m", "rtvc", "--help"],
    "rtvc voices --json": ["-m", "rtvc", "voices", "--json"],
    "rtvc devices --json": ["-m", "rtvc", "devices", "--json"],
    "rtvc presets list": ["-m", "rtvc", "presets", "list"],
    "import rtvc.cli": ["-c", "import rtvc.cli"],
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[v] = "1"
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def time_once(args: list[str], *, cwd: str, env: dict[str, str]) -> float:
    """Wall time of one fresh process in ms; a failing command is an error, not a figure."""
    t0 = time.perf_counter_ns()
    r = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True)
    ms = (time.perf_counter_ns() - t0) / 1e6
    if r.returncode != 0:
        raise SystemExit(f"bench/startup.py: {' '.join(args)} exited {r.returncode}:\n{r.stderr[-2000:]}")
    return ms


def heavy_modules_loaded(code: str, *, cwd: str, env: dict[str, str]) -> list[str]:
    probe = f"import sys\n{code}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", probe], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return [m for m in r.stdout.strip().split(",") if m]


def measure(runs: int) -> dict:
    env = _env()
    with tempfile.TemporaryDirectory() as cwd:
        for args in COMMANDS.values():  # warm the OS file cache and Numba's on-disk cache
            time_once(args, cwd=cwd, env=env)
        times: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for _ in range(runs):
            for name, args in COMMANDS.items():
                times[name].append(time_once(args, cwd=cwd, env=env))
        heavy = {"rtvc --help": heavy_modules_loaded("import rtvc.cli; rtvc.cli.make_parser()", cwd=cwd, env=env)}
    ref = float(np.median(times["import numpy"]))
    rows = {}
    for name, t in times.items():
        p50 = float(np.median(t))
        rows[name] = {"min_ms": float(np.min(t)), "p50_ms": p50, "max_ms": float(np.max(t)),
                      "ratio_to_numpy": p50 / ref}
    help_ratio = rows["rtvc --help"]["ratio_to_numpy"]
    return {
        "bench": "startup", "runs": runs, "python": platform.python_version(), "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "commands": rows, "heavy_modules_loaded_by_help": heavy["rtvc --help"],
        "target": {"rtvc --help within x of import numpy": TARGET_HELP_RATIO, "met": help_ratio <= TARGET_HELP_RATIO
                   and not heavy["rtvc --help"]},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="timed runs per command (default 7)")
    ap.add_argument("--json", action="store_true", help="print the JSON result")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error(f"--runs {args.runs}: expected >= 1")
    result = measure(args.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "startup.json"
    path.write_text(json.dumps(result, indent=1))
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"{'command':<22} {'min ms':>8} {'p50 ms':>8} {'max ms':>8} {'x numpy':>8}")
        for name, r in result["commands"].items():
            print(f"{name:<22} {r['min_ms']:8.0f} {r['p50_ms']:8.0f} {r['max_ms']:8.0f} {r['ratio_to_numpy']:8.2f}")
        print(f"heavy modules loaded by `rtvc --help`: {result['heavy_modules_loaded_by_help'] or 'none'}; "
              f"target met: {result['target']['met']} -> {path}")
    return 0 if result["target"]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
