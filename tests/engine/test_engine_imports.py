"""Engine modules stay importable without torch: heavy imports happen inside load()."""

from __future__ import annotations

import subprocess
import sys


def test_engine_modules_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import backend.download, backend.engine.factory, backend.engine.diffsynth_engine\n"
        "import backend.engine.files, backend.engine.profiles, backend.engine.detect\n"
        "import tests.tinyflux\n"
        "heavy = sorted(m for m in ('torch', 'diffsynth', 'transformers', 'modelscope')"
        " if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
