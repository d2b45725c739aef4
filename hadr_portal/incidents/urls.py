from __future__ import annotations

from django.urls import path

from . import views

app_name = "incidents"
urlpatterns = [
    path("incidents/", views.incident_list, name="list"),
    path("incidents/open", views.incident_open, name="open"),
    path("incidents/<int:pk>/", views.incident_detail, name="detail"),
    path("incidents/<int:pk>/status", views.incident_status, name="status"),
    path("incidents/<int:pk>/update", views.incident_update, name="update"),
    path("incidents/<int:pk>/note", views.incident_note, name="note"),
    path("incidents/<int:pk>/steps/<int:number>", views.incident_step, name="step"),
    path("incidents/<int:pk>/escalate", views.incident_escalate, name="escalate"),
    path("incidents/<int:pk>/postmortem", views.incident_postmortem, name="postmortem"),
    path("contacts/", views.contacts_page, name="contacts"),
    path("priorities/", views.priorities_page, name="priorities"),
    path("priorities/<slug:name>/move", views.priority_move, name="priority-move"),
    path("readiness/", views.readiness_page, name="readiness"),
]
