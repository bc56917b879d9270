"""models/ (and its scoring core) must run where k2 is absent, e.g. the GPU box."""
import os
import pkgutil
import subprocess
import sys

import models

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_models_package_imports_without_k2():
    names = [f"models.{m.name}" for m in pkgutil.iter_modules(models.__path__)]
    code = (
        "import sys, importlib\n"
        "sys.modules['k2'] = None  # any 'import k2' now raises ImportError\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
