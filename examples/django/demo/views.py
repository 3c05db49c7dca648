from datetime import datetime, timezone

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from sessiond.django import users


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "demo/home.html", {"count": request.session.get("count", 0)})


@require_POST
def count(request: HttpRequest) -> HttpResponse:
    request.session["count"] = request.session.get("count", 0) + 1
    return redirect("home")


def _when(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


@login_required
def sessions(request: HttpRequest) -> HttpResponse:
    """The user's active sessions, by handle (never by key), with revoke buttons."""
    message = ""
    if request.method == "POST":
        if "handle" in request.POST:
            ended = users.revoke(request.user, request.POST["handle"])
            message = "Session ended." if ended else "No such session."
        elif "others" in request.POST:
            message = f"{users.revoke_all(request.user, keep=request.session)} other session(s) ended."
    current = request.session.current_handle()  # type: ignore[attr-defined]
    rows = [
        {
            "handle": s.handle,
            "ip": s.ip or "?",
            "user_agent": s.user_agent or "?",
            "last_active": _when(s.last_active_ms),
            "created": _when(s.created_ms),
            "current": s.handle == current,
        }
        for s in users.sessions(request.user)
    ]
    return render(request, "demo/sessions.html", {"rows": rows, "message": message})
