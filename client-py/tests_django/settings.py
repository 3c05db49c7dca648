"""Settings for the Django tests; the socket comes from run.sh's daemon."""

import os

SECRET_KEY = "tests-only, not secret"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "sessiond.django",
    # Django's test app, from the fetched sdist: the tests module we take
    # SessionTestsMixin from imports its models.
    "sessions_tests",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "sessiond.django.middleware.SessionMetaMiddleware",
]
ROOT_URLCONF = "tests_django.urls"
SESSION_ENGINE = "sessiond.django.backend"
SESSIOND_SOCKET = os.environ["SESSIOND_SOCKET"]
SESSIOND_TIMEOUT = 10.0
SESSIOND_COOKIE_HOST = "testserver"

# test_shared: three sites sharing sessions (run.sh gives the daemon the same list).
ALLOWED_HOSTS = ["a.test", "b.test", "c.test"]
SESSIOND_SHARED_SITES = ["a.test", "b.test", "c.test"]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
