"""Small helpers for reading the bot's REST replies, and its SQLite files."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from faqbot.core import encryption, privacy, review_store, tickets

# The encrypted columns of each table (faqbot.core.encryption), with their field names.
ENCRYPTED = {"events": {"data": privacy.EVENT_DATA}, **tickets.ENCRYPTED, "review": review_store.ENCRYPTED}


def texts(messages: list[dict[str, Any]]) -> list[str]:
    return [message["text"] for message in messages if message.get("text")]


def customs(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [message["custom"] for message in messages if message.get("custom")]


def buttons(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [button for message in messages for button in message.get("buttons") or []]


def listening_addresses(root_pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket listening in the process ``root_pid`` or its descendants,
    read from /proc as `ss -ltnp` would."""
    import ipaddress
    from pathlib import Path

    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    tree, grew = {root_pid}, True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= children
        grew = bool(children)
    inodes = set()
    for pid in tree:
        try:
            links = [fd.readlink() for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        inodes |= {str(link)[len("socket:[") : -1] for link in links if str(link).startswith("socket:[")}
    found = set()
    for table, length in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            address, port = local.split(":")
            raw = bytes.fromhex(address)
            # /proc prints each 32-bit word in host (little-endian) order
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add((str(ipaddress.ip_address(words[:16] if length == 32 else words[:4])), int(port, 16)))
    return found


def read_table(path: Path, table: str, where: str = "", params: tuple = ()) -> list[dict[str, Any]]:
    """``SELECT * FROM table [where]`` on one of the bot's SQLite files, as dicts, with the
    encrypted columns decrypted (the key is this process's FAQBOT_DATA_KEYS, as the servers')."""
    with sqlite3.connect(path) as connection:
        connection.row_factory = sqlite3.Row
        rows = [dict(row) for row in connection.execute(f"SELECT * FROM {table} {where}", params)]
    for row in rows:
        for column, field in ENCRYPTED.get(table, {}).items():
            if column in row:
                row[column] = encryption.decrypt(row[column], field)
    return rows


def database_files(directory: Path) -> list[Path]:
    """The SQLite files in a directory (its subdirectories too), with their journals and write-ahead logs."""
    return sorted(path for path in directory.rglob("*") if path.is_file() and ".db" in path.name)
