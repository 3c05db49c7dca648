from django.contrib.auth import views as auth
from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("count/", views.count, name="count"),
    path("sessions/", views.sessions, name="sessions"),
    path("login/", auth.LoginView.as_view(template_name="demo/login.html"), name="login"),
    path("logout/", auth.LogoutView.as_view(), name="logout"),
    path("shared-session/", include("sessiond.django.urls")),
]
