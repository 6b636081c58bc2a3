"""rtvc's tests. ``installed``: the skip condition for optional packages, shared by the test files."""

from importlib.util import find_spec


def installed(*modules: str) -> bool:
    """Whether every named module is installed (found on the path; nothing is imported)."""
    return all(find_spec(m) is not None for m in modules)
