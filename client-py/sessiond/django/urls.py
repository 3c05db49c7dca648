"""The shared-session views (:mod:`sessiond.django.shared`), to include at
the same prefix on every shared site::

    path("shared-session/", include("sessiond.django.urls")),
"""

from django.urls import path

from . import shared

app_name = "sessiond_shared"

urlpatterns = [
    # The seed's: <prefix>/<token>.js (tokens are base64url).
    path("<str:token>.js", shared.script_view, name="script"),
    # The browser-bound flow.
    path("start/", shared.start_view, name="start"),
    path("issue/", shared.issue_view, name="issue"),
    path("redeem/", shared.redeem_view, name="redeem"),
]
