"""A module no test imports: a stored job naming it as its extension must not load it."""

IMPORTED = True
