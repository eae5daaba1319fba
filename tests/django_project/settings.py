"""Settings of the test shop: a SQLite Django database, its tasks on quick."""

from __future__ import annotations

import importlib.util
import os

SECRET_KEY = "quick-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
ROOT_URLCONF = "tests.django_project.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

#: Django 6 has the tasks API built in; before it, the django-tasks backport is an app.
BACKPORT = [] if importlib.util.find_spec("django.tasks") else ["django_tasks"]
INSTALLED_APPS = [*BACKPORT, "quick.contrib.django", "tests.django_project.shop"]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DJANGO_DB", ":memory:"),
    }
}

TASKS = {
    "default": {
        "BACKEND": "quick.contrib.django.QuickBackend",
        "QUEUES": ["default", "slow"],
        "OPTIONS": {"url": os.environ.get("SHOP_QUICK_URL")},
    }
}
