from __future__ import annotations

from django.urls import path

from . import restore_point_views, restore_views, views

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
    path("clusters/<slug:name>/restore-point", restore_point_views.restore_point_new, name="restore-point-new"),
    path("restores/", restore_views.restores_page, name="restores"),
    path("restores/<int:pk>/", restore_views.restore_detail, name="restore"),
    path("restores/<int:pk>/drop-kept", restore_views.restore_drop_kept, name="restore-drop-kept"),
    path("restores/<int:pk>/scratch/query", restore_views.scratch_query, name="scratch-query"),
    path("restores/<int:pk>/scratch/tables", restore_views.scratch_tables, name="scratch-tables"),
    path("restores/<int:pk>/scratch/discard", restore_views.scratch_discard, name="scratch-discard"),
    path("restores/<int:pk>/scratch/copy-back", restore_views.scratch_copy_back, name="scratch-copy-back"),
    path("restores/<int:pk>/scratch/replace", restore_views.scratch_replace, name="scratch-replace"),
    path("restores/<int:pk>/kept-data/remove", restore_views.kept_data_remove, name="kept-data-remove"),
    path("restores/<int:pk>/<slug:step>", restore_views.restore_step, name="restore-step"),
]
