"""Small helpers for reading the bot's REST replies."""

from __future__ import annotations

from typing import Any


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
