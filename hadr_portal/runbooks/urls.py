from __future__ import annotations

from django.urls import path

from . import views

app_name = "runbooks"
urlpatterns = [
    path("", views.runbook_index, name="index"),
    path("<slug:name>/", views.runbook_detail, name="detail"),
]
