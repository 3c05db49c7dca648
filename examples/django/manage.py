#!/usr/bin/env python3
"""Django's command-line utility for the demo (``run.py`` is the one command)."""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    sys.path.insert(0, str(HERE))
    try:
        import sessiond  # noqa: F401
    except ImportError:  # not installed: use the repository's client
        sys.path.insert(0, str(HERE.parents[1] / "client-py"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
