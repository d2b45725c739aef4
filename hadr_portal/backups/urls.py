from __future__ import annotations

from django.urls import path

from . import restore_views, views

app_name = "backups"
urlpatterns = [
    path("", views.backups_page, name="list"),
    path("<int:pk>/", views.backup_detail, name="detail"),
    path("<int:pk>/pin", views.backup_pin, name="pin"),
    path("<int:pk>/download", views.backup_download, name="download"),
    path("policies/<slug:name>/backup-now", views.backup_now, name="backup-now"),
    path("policies/<slug:name>/retention", views.retention_preview, name="retention"),
    path("policies/<slug:name>/prune", views.prune_now, name="prune"),
    path("policies/<slug:name>/restore", restore_views.restore_start, name="restore-start"),
    path("policies/<slug:name>/drill", restore_views.drill_now, name="drill-now"),
    path("restores/", restore_views.restores_page, name="restores"),
    path("restores/<int:pk>/", restore_views.restore_detail, name="restore"),
    path("restores/<int:pk>/drop-kept", restore_views.restore_drop_kept, name="restore-drop-kept"),
    path("restores/<int:pk>/<slug:step>", restore_views.restore_step, name="restore-step"),
]
