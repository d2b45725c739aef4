from __future__ import annotations

from django.urls import path

from . import views

app_name = "metrics"
urlpatterns = [
    path("metrics/overview/", views.metrics_page, name="page"),
    path("errors/", views.errors_page, name="errors"),
    path("api/funnels/<slug:name>/counts", views.funnel_counts, name="funnel-counts"),
]
