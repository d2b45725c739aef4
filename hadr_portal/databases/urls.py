from __future__ import annotations

from django.urls import path

from . import ha_views, views

app_name = "databases"
urlpatterns = [
    path("", views.cluster_list, name="clusters"),
    path("<slug:name>/check", views.connectivity_check, name="check"),
    path("<slug:name>/failover", views.failover, name="failover"),
    path("<slug:name>/nodes/<slug:node>/rebuild", views.rebuild, name="rebuild"),
    path("<slug:name>/switchover", ha_views.switchover, name="switchover"),
    path("<slug:name>/members/<slug:member>/<slug:action>", ha_views.member_action, name="member"),
    path("<slug:name>/pause", ha_views.pause, name="pause"),
    path("<slug:name>/patroni-config", ha_views.config, name="patroni_config"),
]
