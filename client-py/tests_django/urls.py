"""A "your sessions" application, as small as the tests need."""

from django.contrib.auth import alogin, get_user_model, login, logout
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import engines
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from sessiond.django import users

BACKEND = "django.contrib.auth.backends.ModelBackend"


@csrf_exempt
def login_view(request: HttpRequest) -> HttpResponse:
    login(request, get_user_model().objects.get(username=request.POST["username"]), backend=BACKEND)
    return HttpResponse("ok")


@csrf_exempt
async def alogin_view(request: HttpRequest) -> HttpResponse:
    user = await get_user_model().objects.aget(username=request.POST["username"])
    await alogin(request, user, backend=BACKEND)
    return HttpResponse("ok")


@csrf_exempt
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return HttpResponse("ok")


def whoami(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.user.get_username() or "anonymous")


def visit(request: HttpRequest) -> HttpResponse:
    request.session["visits"] = request.session.get("visits", 0) + 1
    return HttpResponse(str(request.session["visits"]))


def sessions(request: HttpRequest) -> JsonResponse:
    listed = users.sessions(request.user)
    current = request.session.current_handle()  # type: ignore[attr-defined]
    return JsonResponse({"current": current, "sessions": [[s.handle, s.ip, s.user_agent] for s in listed]})


@csrf_exempt
def revoke(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(users.revoke(request.user, request.POST["handle"])))


@csrf_exempt
def revoke_others(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(users.revoke_all(request.user, keep=request.session)))  # type: ignore[arg-type]


PAGE = engines["django"].from_string(
    "{% load sessiond_shared %}<head>{% sessiond_shared_session_loader %}</head>"
    '<a href="{% sessiond_shared_url to next=next %}">on</a>'
)


def page(request: HttpRequest) -> HttpResponse:
    """A page with the shared-session tags: ?to=HOST&next=PATH for the link."""
    return HttpResponse(PAGE.render({"to": request.GET.get("to", "b.test"), "next": "/whoami/"}, request))


urlpatterns = [
    path("page/", page),
    path("shared-session/", include("sessiond.django.urls")),
    path("login/", login_view),
    path("alogin/", alogin_view),
    path("logout/", logout_view),
    path("whoami/", whoami),
    path("visit/", visit),
    path("sessions/", sessions),
    path("revoke/", revoke),
    path("revoke-others/", revoke_others),
]
