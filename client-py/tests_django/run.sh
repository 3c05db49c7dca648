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
#
# Then, without TEST_IDs, runs Django's suites (SessionTestsMixin for both
# engines, ClearSessionsCommandTests) again on the newest Django 6.x, in
# client-py/.cache/venv-django6, made with Python 3.12 or newer
# ($PYTHON_DJANGO6, else python3.14/3.13/3.12 from PATH, or pyenv's);
# skipped with a message when there is none. Its Django is upgraded to the
# newest 6.x at most once a day (from PyPI; offline, the one installed is kept).
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

# Django's own tests, from the sdist of the version installed in venv $1:
# prints the directory holding them.
django_tests() {
    local venv=$1 version archive sdist
    version=$("$venv/bin/python" -c 'import django; print(django.get_version())')
    sdist=$cache/sdist/django-$version
    if [[ ! -d $sdist/tests/sessions_tests ]]; then
        mkdir -p "$cache/sdist"
        "$venv/bin/pip" download --quiet --no-deps --no-binary :all: --dest "$cache/sdist" "Django==$version" >&2
        archive=$(ls "$cache/sdist"/[dD]jango-"$version".tar.gz)
        tar -xzf "$archive" -C "$cache/sdist" "django-$version/tests/sessions_tests"
    fi
    echo "$sdist/tests"
}
tests=$(django_tests "$venv")

# A Python 3.12 or newer (Django 6's minimum), or nothing.
is_312() { [[ -x $1 ]] && "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; }
python_312() {
    local name found version
    for name in ${PYTHON_DJANGO6:-} python3.14 python3.13 python3.12; do
        found=$(command -v "$name" 2>/dev/null) || continue
        is_312 "$found" && { echo "$found"; return; }
        # A pyenv shim of a version that is installed but not selected.
        if command -v pyenv >/dev/null; then
            for version in $(pyenv whence "$name" 2>/dev/null); do
                found=$(pyenv root)/versions/$version/bin/$name
                is_312 "$found" && { echo "$found"; return; }
            done
        fi
    done
    return 1
}

# The Django 6.x venv, made or refreshed; fails if it cannot be had.
venv6=$cache/venv-django6
django6_venv() {
    local python
    if ! is_312 "$venv6/bin/python"; then
        python=$(python_312) || { echo "no Python 3.12+ (python3.12 on PATH, or \$PYTHON_DJANGO6)"; return 1; }
        rm -rf "$venv6"
        "$python" -m venv "$venv6" || return 1
    fi
    local stamp=$venv6/.django-checked
    if [[ -z $(find "$stamp" -mmin -1440 2>/dev/null) ]] || ! "$venv6/bin/python" -c 'import django, sys; sys.exit(django.VERSION[0] != 6)' 2>/dev/null; then
        if "$venv6/bin/pip" install --quiet --disable-pip-version-check --upgrade "Django>=6,<7" >&2; then
            touch "$stamp"
        fi
    fi
    "$venv6/bin/python" -c 'import django, sys; sys.exit(django.VERSION[0] != 6)' 2>/dev/null \
        || { echo "could not install Django 6.x into $venv6"; return 1; }
}
django6=
django6_skipped=
if [[ $# -eq 0 ]]; then
    if why=$(django6_venv); then
        tests6=$(django_tests "$venv6")
        django6=$("$venv6/bin/python" -c 'import django; print(django.get_version())')
    else
        django6_skipped=$why
        echo "run.sh: Django 6.x skipped: $why" >&2
    fi
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
version=$("$venv/bin/python" -c 'import django; print(django.get_version())')
echo "=== Django $version: Django's session tests and ours"
SESSIOND_SOCKET=$tmp/d/sessiond.sock "$venv/bin/python" tests_django/run.py "$tests" "$@" || status=$?
if [[ -n $django6 ]]; then
    echo
    echo "=== Django $django6: Django's session tests"
    SESSIOND_SOCKET=$tmp/d/sessiond.sock "$venv6/bin/python" tests_django/run.py "$tests6" \
        tests_django.test_mixin tests_django.test_sealed.SealedSessionTests || status=$?
elif [[ -n $django6_skipped ]]; then
    echo
    echo "=== Django 6.x: skipped: $django6_skipped"
fi
if [[ $status -ne 0 ]]; then
    echo "--- sessiond log" >&2
    tail -n 50 "$tmp/log" >&2
fi
exit "$status"
