"""What the project's own SQL stores (tickets, review queue) share."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa


@contextlib.contextmanager
def write_transaction(engine: sa.engine.Engine) -> Iterator[sa.engine.Connection]:
    """A transaction that holds SQLite's write lock from its start, so two processes on one
    file cannot both read and then both write (PostgreSQL locks rows instead)."""
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield connection
