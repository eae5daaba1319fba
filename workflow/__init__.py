"""DAG workflows on leased queue items; see issue 5."""
