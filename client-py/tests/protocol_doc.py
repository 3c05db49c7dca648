"""Reads the parts of PROTOCOL.md that tests hold the code to: the golden
vectors, the opcode and error tables, and the type declarations."""

from __future__ import annotations

import re
from pathlib import Path

PROTOCOL_MD = Path(__file__).resolve().parents[2] / "protocol" / "PROTOCOL.md"


def text() -> str:
    return PROTOCOL_MD.read_text(encoding="utf-8")


def vectors() -> dict[str, bytes]:
    """Every ``#### NAME`` heading followed by a fenced ``hex`` block, as
    protocol/tests/golden.rs reads them: the frame's bytes by name."""
    out: dict[str, bytes] = {}
    name: str | None = None
    hex_text: list[str] | None = None
    for line in text().splitlines():
        if line.startswith("#### "):
            name = line[5:].strip()
        elif line.strip() == "```hex":
            hex_text = []
        elif line.strip() == "```":
            if name is not None and hex_text is not None:
                if name in out:
                    raise ValueError(f"PROTOCOL.md has two vectors named {name!r}")
                out[name] = bytes.fromhex("".join(hex_text))
            name, hex_text = None, None
        elif hex_text is not None:
            hex_text.extend(line.split())
    return out


def _section(title: str) -> str:
    doc = text()
    start = doc.index(f"\n## {title}\n")
    end = doc.find("\n## ", start + 1)
    return doc[start : end if end != -1 else len(doc)]


def _table_rows(section: str) -> list[list[str]]:
    """The cells of a Markdown table's body rows (not its header or rule)."""
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def opcode_table() -> list[tuple[str, int, str]]:
    """(message name, opcode, body type) for both sides of every row of the
    "Opcodes" table; ``(empty)`` bodies are named ``Empty``."""
    out = []
    for cells in _table_rows(_section("Opcodes")):
        if len(cells) != 6:
            raise ValueError(f"an opcode row with {len(cells)} cells: {cells}")
        for name, op, body in (cells[0:3], cells[3:6]):
            if op:
                out.append((name, int(op, 16), "Empty" if body == "(empty)" else body))
    return out


def error_table() -> list[tuple[int, str]]:
    """(code, name) for every row of the "Errors" table."""
    return [(int(cells[0]), cells[1]) for cells in _table_rows(_section("Errors"))]


def type_declarations() -> dict[str, list[tuple[str, str]]]:
    """The "Types" block: each structure's (field, type) pairs in order, and
    for enumerations (``enum { 0 A, 1 B(u32) }``) (index, variant) pairs."""
    block = _section("Types").split("```")[1]
    out: dict[str, list[tuple[str, str]]] = {}
    for name, is_enum, inner in re.findall(r"(\w+)\s+(enum\s+)?\{([^}]*)\}", block):
        parts = _split_top_level(inner)
        if is_enum:
            out[name] = [tuple(p.split(None, 1)) for p in parts]  # type: ignore[misc]
        else:
            out[name] = [tuple(s.strip() for s in p.split(":", 1)) for p in parts]  # type: ignore[misc]
    return out


def _split_top_level(inner: str) -> list[str]:
    """Splits on commas outside angle brackets and parentheses."""
    parts, depth, current = [], 0, ""
    for ch in inner:
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current.strip())
    return [" ".join(p.split()) for p in parts]
