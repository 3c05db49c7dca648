#!/usr/bin/env python3
"""The demo in one command: makes the user database (``manage.py migrate``)
and the demo user (demo / demo) if missing, then serves on 127.0.0.1.

    python3 examples/django/run.py [--port 8000] [--noreload]

Open http://a.localhost:8000/ (and b.localhost, the second site). The
sessions are in the daemon at $SESSIOND_SOCKET, else
./sessiond-data/sessiond.sock; the users in examples/django/.data/ (or
$DEMO_DATA).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", "8000")))
    parser.add_argument("--noreload", action="store_true", help="no autoreloader (one process)")
    args = parser.parse_args()
    os.environ["DEMO_PORT"] = str(args.port)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")
    sys.path.insert(0, str(HERE))
    try:
        import sessiond  # noqa: F401
    except ImportError:  # not installed: use the repository's client
        sys.path.insert(0, str(HERE.parents[1] / "client-py"))

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    users = get_user_model().objects
    if not users.filter(username="demo").exists():
        users.create_user("demo", password="demo")
    if os.environ.get("RUN_MAIN") != "true":  # once, not again in the reloader's child
        print(
            f"demo: sign in as demo / demo at http://a.localhost:{args.port}/ (and b.localhost:{args.port})", flush=True
        )
    call_command("runserver", f"127.0.0.1:{args.port}", use_reloader=not args.noreload)


if __name__ == "__main__":
    main()
