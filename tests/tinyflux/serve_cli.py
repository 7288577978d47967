"""Run the majicbot CLI with the tiny FLUX registered: ``python -m tests.tinyflux.serve_cli ARGS``.

For subprocess tests (SIGKILL, restart): point ``engine.models_dir`` at a folder written by
``write_tiny_models`` and ``engine.devices`` at ``["cpu"]`` in the config file passed in ARGS.
"""

from __future__ import annotations

import sys

from tests.tinyflux import register_tiny_models


def main(argv: list[str] | None = None) -> int:
    """Register the tiny models with diffsynth, then hand over to ``bots.cli.main``."""
    register_tiny_models()
    from bots.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
