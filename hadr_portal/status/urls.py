from __future__ import annotations

from django.urls import path

from . import views

app_name = "status"
urlpatterns = [
    path("services/new", views.service_edit, name="service-new"),
    path("services/<slug:name>/", views.service_detail, name="service"),
    path("services/<slug:name>/edit", views.service_edit, name="service-edit"),
    path("services/<slug:name>/restart", views.service_restart, name="service-restart"),
    path("services/<slug:name>/checks/new", views.check_edit, name="check-new"),
    path("services/<slug:name>/checks/<int:check_id>/", views.check_edit, name="check-edit"),
    path("services/<slug:name>/checks/<int:check_id>/delete", views.check_delete, name="check-delete"),
    path("services/<slug:name>/maintenance", views.maintenance_open, name="maintenance"),
    path("push/heartbeat", views.heartbeat, name="heartbeat-header"),  # the token in a header
    path("push/heartbeat/<str:token>", views.heartbeat, name="heartbeat"),
    path("push/host", views.host_report, name="host-report"),
]
