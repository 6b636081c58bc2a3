"""rtvc's tests. Skip conditions shared by the test files: ``installed`` (optional packages) and
``have_mbrola`` (espeak-ng + MBROLA with the named voices)."""

import shutil
from importlib.util import find_spec
from pathlib import Path


def installed(*modules: str) -> bool:
    """Whether every named module is installed (found on the path; nothing is imported)."""
    return all(find_spec(m) is not None for m in modules)


def have_mbrola(*voices: str) -> bool:
    """Whether espeak-ng, mbrola and every named MBROLA voice (``us1`` ...) are installed."""
    return shutil.which("espeak-ng") is not None and shutil.which("mbrola") is not None and all(
        (Path("/usr/share/mbrola") / v / v).exists() for v in voices)
