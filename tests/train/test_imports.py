"""Import directions: the runtime half of the neural path never pulls in torch or librosa (scipy is not checked: numba imports it when present)."""

import subprocess
import sys


def test_runtime_modules_do_not_import_training_libraries():
    code = ("import sys, rtvc.converter, rtvc.features, rtvc.synthesis, rtvc.manifest, rtvc.train.commands; "
            "bad = [m for m in ('torch', 'librosa') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
