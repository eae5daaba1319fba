"""The shop's two endpoints: place an order, read a task's result."""

from __future__ import annotations

from django.urls import path

from tests.django_project.shop import views

urlpatterns = [
    path("orders", views.place_order),
    path("results/<str:result_id>", views.result),
]
