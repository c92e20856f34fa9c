"""Probe: dump, as JSON on stdout, how this file was started as ``__main__``.

The tests run it as ``python X`` and as ``gradcheck run X`` (copied to ``pkg/mod.py``,
``pkg/__main__.py`` and ``app/__main__.py`` for the ``-m`` and directory cases) and compare the dumps.
"""

import json
import os
import pickle
import sys

# The dunder names the interpreter put into our globals (the imports above add none).
DUNDERS = sorted(name for name in globals() if name.startswith("__") and name.endswith("__"))


def module_level_function() -> str:
    """Pickled by reference (``__main__.module_level_function``) like a DataLoader worker target."""
    return "called"


def _spec() -> dict[str, object] | None:
    spec = globals().get("__spec__")
    if spec is None:
        return None
    return {"name": spec.name, "origin": spec.origin, "parent": spec.parent}


def _pickles() -> str:
    try:
        restored = pickle.loads(pickle.dumps(module_level_function))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok" if restored is module_level_function else "restored a different object"


def _main_is_this_module() -> bool:
    import __main__

    return __main__.__dict__ is globals() and sys.modules["__main__"].__dict__ is globals()


def _builtins() -> dict[str, object]:
    present = "__builtins__" in globals()
    value = globals().get("__builtins__")
    return {"present": present, "type": type(value).__name__ if present else None}


dump = {
    "__name__": __name__,
    "__file__": globals().get("__file__"),
    "__cached__": globals().get("__cached__"),
    "sys.argv": sys.argv,
    "sys.path[0]": sys.path[0],
    "sys.path": sys.path,
    "main_module_is_this_module": _main_is_this_module(),
    "__spec__": _spec(),
    "__package__": globals().get("__package__"),
    "__loader__": type(globals().get("__loader__")).__name__,
    "__builtins__": _builtins(),
    "cwd": os.getcwd(),
    "pickle_module_level_function": _pickles(),
    "dunder_globals": DUNDERS,
}
print(json.dumps(dump, indent=1, sort_keys=True))
