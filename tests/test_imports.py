"""Import directions (STYLE.md): pure core, I/O at the edges.

Only rtvc/audio.py imports sounddevice, only rtvc/control/server.py imports websockets, only
rtvc/train/ imports torch; the runtime never pulls torch in.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import rtvc

PKG = Path(rtvc.__file__).parent
ROOT = PKG.parent
ALLOWED = {"sounddevice": {"rtvc/audio.py"}, "websockets": {"rtvc/control/server.py"}, "torch": {"rtvc/train/"}}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods.add(node.module.split(".")[0])
    return mods


def test_edge_libraries_are_imported_only_at_their_edge():
    files = sorted(PKG.rglob("*.py")) + sorted((ROOT / "native").rglob("*.py"))
    assert len(files) > 10
    offenders = []
    for f in files:
        rel = f.relative_to(ROOT).as_posix()
        for mod, allowed in ALLOWED.items():
            if mod in imported_modules(f) and not any(rel == a or rel.startswith(a) for a in allowed if a.endswith("/")) \
                    and rel not in allowed:
                offenders.append(f"{rel} imports {mod}")
    assert not offenders, offenders


def test_runtime_never_loads_torch():
    code = ("import sys, rtvc.engine, rtvc.voices, rtvc.cli\n"
            "import importlib.util\n"
            "if importlib.util.find_spec('rtvc.converter'): import rtvc.converter\n"
            "if importlib.util.find_spec('rtvc.control.protocol'): import rtvc.control.protocol\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
