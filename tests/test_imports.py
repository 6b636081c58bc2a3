"""What the runtime loads when it runs: never torch or librosa, and the everyday commands work
without the training and dev extras. (Which module may import which is read from the source in
``tests/test_layering.py``; here the imports are really run.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import rtvc

ROOT = Path(rtvc.__file__).parent.parent


def test_runtime_never_loads_torch_or_librosa():
    """Through any chain of imports (scipy is not checked: numba imports it when present)."""
    code = ("import sys, rtvc.engine, rtvc.voices, rtvc.cli, rtvc.converter, rtvc.features, rtvc.synthesis, "
            "rtvc.manifest, rtvc.control.protocol, rtvc.train.commands\n"
            "print([m for m in ('torch', 'librosa') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# a meta-path finder that makes the training and dev extras look uninstalled, in a child process
_BLOCK_EXTRAS = """
import importlib.abc, sys
class _NoExtras(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'onnx', 'librosa', 'scipy'):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _NoExtras())
import importlib.util
_find = importlib.util.find_spec
importlib.util.find_spec = lambda n, *a: None if n.split('.')[0] in ('torch', 'onnx') else _find(n, *a)
from rtvc.cli import main
rc = main(sys.argv[1:])
print('LOADED', ','.join(m for m in ('torch', 'librosa', 'scipy', 'numba', 'onnxruntime', 'sounddevice')
                         if m in sys.modules))
sys.exit(rc)
"""


def _run_without_extras(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _BLOCK_EXTRAS, *argv], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600)


def test_everyday_commands_run_without_the_train_and_dev_extras(tmp_path: Path) -> None:
    """The README's first command on a runtime-only install: no torch, onnx, librosa or scipy."""
    for argv in (["--help"], ["voices", "--json"], ["presets", "list"], ["run", "--help"], ["serve", "--help"],
                 ["clone", "--help"], ["run", "--voice", "deeper", "--duration", "1"]):
        r = _run_without_extras(tmp_path, *argv)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (argv, r.stderr[-3000:])
    sample = ROOT / "rtvc" / "data" / "sample.wav"
    r = _run_without_extras(tmp_path, "convert", str(sample), str(tmp_path / "o.wav"), "--voice", "joe")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]


def test_training_commands_without_torch_say_how_to_install_it(tmp_path: Path) -> None:
    for cmd in ("clone", "train", "train-head"):
        extra = {"clone": [str(tmp_path), "--name", "me"], "train": ["--corpus", "x", "--name", "y", "--gender", "male"],
                 "train-head": ["--voice", "x.onnx", "--corpus", "x", "--name", "y"]}[cmd]
        r = _run_without_extras(tmp_path, cmd, *extra)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (cmd, r.stderr)
        line = r.stderr.strip().splitlines()
        assert len(line) == 1 and f"`rtvc {cmd}` needs the `train` extra" in line[0] and "pip install" in line[0]


def test_help_imports_nothing_heavy() -> None:
    code = ("import sys, rtvc.cli; rtvc.cli.make_parser()\n"
            "print(','.join(m for m in ('numba', 'onnxruntime', 'sounddevice', 'torch', 'librosa', 'scipy', "
            "'soundfile', 'websockets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", out.stdout
