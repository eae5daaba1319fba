"""A small Django project whose tasks run on quick (tests/acceptance/test_django_tasks.py).

Its settings read ``SHOP_DJANGO_DB`` (the Django database file) and ``SHOP_QUICK_URL``
(the quick store) from the environment, so the test and its worker process share both.
"""
