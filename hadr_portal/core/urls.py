from __future__ import annotations

from django.urls import path

from . import views

app_name = "core"
urlpatterns = [
    path("operations/", views.operations, name="operations"),
    path("operations/<int:pk>/", views.operation_detail, name="operation"),
    path("operations/<int:pk>/cancel", views.operation_cancel_view, name="operation-cancel"),
    path("audit/", views.audit_log, name="audit"),
    path("roles/", views.roles, name="roles"),
]
