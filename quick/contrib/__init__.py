"""Integrations with frameworks, each an edge like the CLI: ``quick`` never imports them."""
