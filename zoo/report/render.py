"""The report's building blocks and the one HTML file they render to (Jinja2, images as data: URIs).

A section is a title, one sentence that says what it shows, and a list of blocks: tables,
figure grids, short texts and "missing" notes. Sections never fail on a partial run; what is
not there is said in a missing note. Everything the page needs is inside the file: CSS inline,
figures base64-encoded, no scripts from anywhere, so it opens offline and can be mailed.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TEMPLATE = "report.html.j2"


@dataclass
class Section:
    id: str
    title: str
    lead: str = ""
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], caption: str = "") -> None:
        """Rows of cells; numbers are right-aligned (cells are shown as given: format them first)."""
        rows = [["" if c is None else str(c) for c in r] for r in rows]
        numeric = [
            bool(rows) and all(_looks_numeric(r[i]) for r in rows if i < len(r) and r[i]) for i in range(len(columns))
        ]
        self.blocks.append(
            {"kind": "table", "columns": list(columns), "rows": rows, "numeric": numeric, "caption": caption}
        )

    def figure(self, path: str | os.PathLike, caption: str = "", size: str = "m") -> bool:
        """Embed a PNG; ``size``: s (thumb), g (gallery), m (square plot), l (half width), w (wide), xl (full). False if absent."""
        uri = data_uri(path)
        if uri is None:
            return False
        grid = (
            self.blocks[-1]
            if self.blocks and self.blocks[-1]["kind"] == "figures" and self.blocks[-1].get("open")
            else None
        )
        item = {"src": uri, "caption": caption, "size": size}
        if grid is None:
            self.blocks.append({"kind": "figures", "items": [item], "open": True})
        else:
            grid["items"].append(item)
        return True

    def end_figures(self) -> None:
        """Start a new grid with the next figure."""
        if self.blocks and self.blocks[-1]["kind"] == "figures":
            self.blocks[-1]["open"] = False

    def text(self, text: str, heading: str = "") -> None:
        self.end_figures()
        self.blocks.append({"kind": "text", "text": text, "heading": heading})

    def missing(self, text: str) -> None:
        self.end_figures()
        self.blocks.append({"kind": "missing", "text": text})

    def heading(self, text: str) -> None:
        self.end_figures()
        self.blocks.append({"kind": "heading", "text": text})

    @property
    def empty(self) -> bool:
        return not any(b["kind"] in ("table", "figures") for b in self.blocks)


def _looks_numeric(cell: str) -> bool:
    s = cell.strip().replace(",", "").replace("%", "").replace("×", "").split(" ")[0].lstrip("+-−")
    try:
        float(s)
        return True
    except ValueError:
        return False


def data_uri(path: str | os.PathLike) -> str | None:
    """``data:image/png;base64,…`` of a PNG file, or None when it does not exist."""
    path = Path(path)
    if not path.is_file():
        return None
    mime = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}.get(
        path.suffix.lower()
    )
    if mime is None:
        return None
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render(title: str, subtitle: str, sections: Sequence[Section], facts: Sequence[tuple[str, str]]) -> str:
    """The whole page as one string."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("zoo.report", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(TEMPLATE).render(title=title, subtitle=subtitle, sections=sections, facts=facts)


# ----------------------------------------------------------------------------- number formats
def pct(x: Any, digits: int = 2) -> str:
    return f"{100 * float(x):.{digits}f}%" if _finite(x) else ""


def num(x: Any, digits: int = 4) -> str:
    return f"{float(x):.{digits}f}" if _finite(x) else ""


def _finite(x: Any) -> bool:
    try:
        return x is not None and not isinstance(x, bool) and float(x) == float(x) and abs(float(x)) != float("inf")
    except (TypeError, ValueError):
        return False


def megabytes(n: Any) -> str:
    return f"{int(n) / 1e6:.2f} MB" if _finite(n) else ""


def count(n: Any) -> str:
    if not _finite(n):
        return ""
    n = float(n)
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else f"{n:.0f}"
