from __future__ import annotations

from django.urls import path

from . import views

# No namespace: every page links home as {% url 'dashboard' %}, and LOGIN_REDIRECT_URL names it.
urlpatterns = [
    path("", views.home, name="dashboard"),
]
