from __future__ import annotations

from django.urls import path

from . import views

app_name = "databases"
urlpatterns = [
    path("", views.cluster_list, name="clusters"),
    path("<slug:name>/check", views.connectivity_check, name="check"),
    path("<slug:name>/failover", views.failover, name="failover"),
    path("<slug:name>/nodes/<slug:node>/rebuild", views.rebuild, name="rebuild"),
]
