"""`python -m ptm_core.lab build|publish|experiment|report|probe ...` (the same commands as `python -m ptm_core lab ...`)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"build": "ptm_core.lab.build", "publish": "ptm_core.lab.publish",
                "experiment": "ptm_core.lab.experiment", "report": "ptm_core.lab.report", "probe": "ptm_core.lab.probe"}
    if not argv or argv[0] not in commands:
        print(f"usage: python -m ptm_core.lab {{{','.join(commands)}}} [options]", file=sys.stderr)
        return 2
    import importlib

    return importlib.import_module(commands[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
