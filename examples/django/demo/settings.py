"""The demo's settings: Django's auth with a SQLite user database; the
sessions in sessiond. Not for production (DEBUG, a fixed SECRET_KEY)."""

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("DEMO_DATA", HERE.parent / ".data"))
PORT = os.environ.get("DEMO_PORT", "8000")

SECRET_KEY = os.environ.get("DEMO_SECRET_KEY", "sessiond demo, not secret")
DEBUG = True
ALLOWED_HOSTS = ["a.localhost", "b.localhost", "localhost", "127.0.0.1"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "sessiond.django",  # the template tags, the sessiond_sessions command (owners need no app)
    "demo",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "sessiond.django.middleware.SessionMetaMiddleware",  # IP and user agent, for the sessions page
]
ROOT_URLCONF = "demo.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",  # the sessiond_shared tags need it
                "django.contrib.auth.context_processors.auth",
                "django.template.context_processors.csrf",
            ]
        },
    }
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DATA / "users.sqlite3"}}
DATA.mkdir(parents=True, exist_ok=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Sessions: in sessiond ($SESSIOND_SOCKET, else ./sessiond-data/sessiond.sock).
SESSION_ENGINE = "sessiond.django.backend"
SESSIOND_SOCKET = os.environ.get("SESSIOND_SOCKET")
SESSIOND_TOUCH_ON_READ = True  # every request counts as activity: "last active" is exact
# The two sites sharing sessions: the daemon's [transfer] sites (sessiond.toml).
SESSIOND_SHARED_SITES = [f"a.localhost:{PORT}", f"b.localhost:{PORT}"]

LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"
