#!/usr/bin/env bash
# Runs Django's session tests (SessionTestsMixin, ClearSessionsCommandTests)
# and ours against sessiond.django.backend and a real daemon.
#
#   bash client-py/tests_django/run.sh [TEST_ID...]   (from anywhere)
#
# Makes or reuses a venv with Django 5.2 in client-py/.cache/venv, fetches
# the matching Django sdist into client-py/.cache/sdist (its tests are used
# from there, never copied into the repository), starts the daemon
# ($SESSIOND_BIN, else target/debug/sessiond) on a temporary directory, and
# exits non-zero if any test fails. Needs python3 (3.10+) and PyPI.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
client_py=$(dirname "$here")
repo=$(dirname "$client_py")
cache=$client_py/.cache
venv=$cache/venv
python=${PYTHON:-python3}
bin=${SESSIOND_BIN:-$repo/target/debug/sessiond}

if [[ ! -x $venv/bin/python ]]; then
    "$python" -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import django, sys; sys.exit(django.VERSION[:2] != (5, 2))' 2>/dev/null; then
    "$venv/bin/pip" install --quiet "Django==5.2.*"
fi
version=$("$venv/bin/python" -c 'import django; print(django.get_version())')

# Django's own tests, from the sdist of the installed version.
sdist=$cache/sdist/django-$version
if [[ ! -d $sdist/tests/sessions_tests ]]; then
    mkdir -p "$cache/sdist"
    "$venv/bin/pip" download --quiet --no-deps --no-binary :all: --dest "$cache/sdist" "Django==$version"
    archive=$(ls "$cache/sdist"/[dD]jango-"$version".tar.gz)
    tar -xzf "$archive" -C "$cache/sdist" "django-$version/tests/sessions_tests"
fi

# The daemon may be mid-rebuild: wait up to 60 s for its binary.
for _ in $(seq 120); do
    [[ -x $bin ]] && break
    sleep 0.5
done
[[ -x $bin ]] || { echo "run.sh: no sessiond binary at $bin (build it, or set SESSIOND_BIN)" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sessiond-django-XXXXXX")
daemon=
cleanup() {
    if [[ -n $daemon ]]; then
        kill -9 "$daemon" 2>/dev/null || true
        wait "$daemon" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Sweeps only when asked, so that the tests can see what clearsessions does;
# reseals sealed cookies after a second, so that they can see a reseal;
# shares sessions between the sites of test_shared (settings.py's
# SESSIOND_SHARED_SITES).
cat >"$tmp/sessiond.toml" <<'EOF'
[expiry]
sweep_interval_ms = 3600000
[cookies]
reseal_after_secs = 1
[transfer]
sites = ["a.test", "b.test", "c.test"]
EOF
RUST_LOG=${SESSIOND_TEST_LOG:-warn} "$bin" --data-dir "$tmp/d" --threads 2 --config "$tmp/sessiond.toml" \
    >"$tmp/stdout" 2>"$tmp/log" &
daemon=$!
for _ in $(seq 2000); do  # up to 20 s for the readiness line, never a fixed sleep
    grep -q '^sessiond ready' "$tmp/stdout" 2>/dev/null && break
    if ! kill -0 "$daemon" 2>/dev/null; then
        echo "run.sh: sessiond exited; its log:" >&2
        cat "$tmp/log" >&2
        exit 1
    fi
    sleep 0.01
done
grep -q '^sessiond ready' "$tmp/stdout" || { echo "run.sh: sessiond did not become ready" >&2; cat "$tmp/log" >&2; exit 1; }

cd "$client_py"
status=0
SESSIOND_SOCKET=$tmp/d/sessiond.sock "$venv/bin/python" tests_django/run.py "$sdist/tests" "$@" || status=$?
if [[ $status -ne 0 ]]; then
    echo "--- sessiond log" >&2
    tail -n 50 "$tmp/log" >&2
fi
exit "$status"
