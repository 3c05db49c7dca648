#!/usr/bin/env bash
# The example site (examples/django) in a real browser: Debian's Chromium,
# headless, through Selenium, against a real daemon and runserver.
#
#   bash client-py/tests_django/run_browser.sh        (from anywhere)
#
# Needs `apt-get install -y chromium chromium-driver`; without them the test
# is skipped, or fails when CI=true. Makes or reuses the venv of run.sh
# (client-py/.cache/venv) and installs Django 5.2 and selenium into it from
# PyPI; never downloads a browser or a driver. Bounded: 5 minutes in all.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
client_py=$(dirname "$here")
venv=$client_py/.cache/venv
python=${PYTHON:-python3}

if [[ ! -x $venv/bin/python ]]; then
    "$python" -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import django, sys; sys.exit(django.VERSION[:2] != (5, 2))' 2>/dev/null; then
    "$venv/bin/pip" install --quiet "Django==5.2.*"
fi
if ! "$venv/bin/python" -c 'import selenium' 2>/dev/null; then
    "$venv/bin/pip" install --quiet "selenium>=4.11"
fi

export SE_OFFLINE=true
cd "$client_py"
exec timeout --kill-after=10 300 "$venv/bin/python" -m unittest -v tests_django.test_browser
