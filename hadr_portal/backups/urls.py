from __future__ import annotations

from django.urls import path

from . import views

app_name = "backups"
urlpatterns = [
    path("", views.backups_page, name="list"),
    path("<int:pk>/", views.backup_detail, name="detail"),
    path("<int:pk>/pin", views.backup_pin, name="pin"),
    path("<int:pk>/download", views.backup_download, name="download"),
    path("policies/<slug:name>/backup-now", views.backup_now, name="backup-now"),
    path("policies/<slug:name>/retention", views.retention_preview, name="retention"),
    path("policies/<slug:name>/prune", views.prune_now, name="prune"),
]
