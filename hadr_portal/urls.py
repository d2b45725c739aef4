"""Top-level URLs. Everything needs a login except /healthz, /metrics (token or network), the push endpoints and
the login page itself; /api/restore-points takes a bearer token instead."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from hadr_portal.accounts import signin
from hadr_portal.backups import restore_point_views
from hadr_portal.core import views as core_views
from hadr_portal.metrics import views as metrics_views

admin.site.site_header = "HADR Portal administration"

urlpatterns = [
    path("healthz", core_views.healthz, name="healthz"),
    path("metrics", metrics_views.prometheus_metrics, name="prometheus-metrics"),
    path("login/", signin.SignInView.as_view(), name="login"),
    path("login/code/", signin.sign_in_code, name="login-code"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/restore-points", restore_point_views.restore_points_api, name="api-restore-points"),
    path("account/", include("hadr_portal.accounts.urls")),
    path("databases/", include("hadr_portal.databases.urls")),
    path("backups/", include("hadr_portal.backups.urls")),
    path("runbooks/", include("hadr_portal.runbooks.urls")),
    path("", include("hadr_portal.incidents.urls")),
    path("", include("hadr_portal.metrics.urls")),
    path("", include("hadr_portal.status.urls")),
    path("", include("hadr_portal.dashboard.urls")),
    path("", include("hadr_portal.core.urls")),
]
