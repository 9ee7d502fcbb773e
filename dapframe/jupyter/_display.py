"""What the ``%dap`` commands return: small objects that draw themselves in a notebook.

Each has an HTML repr for Jupyter and a one-line text repr for a terminal. Every string from
data or the user is escaped; nothing here ever holds a secret.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

    from dapframe.result import QueryResult
    from dapframe.schema import ColumnSchema, TableSchema

__all__ = ["OUTPUTS", "DapResult", "Message", "SchemaView", "SyncView", "TableList", "iso",
           "size_text"]

#: ``Dap.output`` values: what ``name << %dap snapshot ...`` binds.
OUTPUTS = ("lazy", "eager", "result")

_STYLE = (
    "<style>"
    ".dapframe-facts{font-family:var(--jp-ui-font-family,sans-serif);font-size:12px;"
    "margin:2px 0 6px 0;color:var(--jp-ui-font-color1,#333)}"
    ".dapframe-facts b{font-weight:600}"
    ".dapframe-facts .dapframe-sep{color:var(--jp-ui-font-color3,#999);padding:0 4px}"
    ".jp-RenderedHTMLCommon .dapframe-tbl td,.jp-RenderedHTMLCommon .dapframe-tbl th,"
    ".dapframe-tbl td,.dapframe-tbl th{text-align:left;padding:1px 8px;font-size:12px}"
    "</style>"
)


def iso(value: datetime | None) -> str:
    """``2026-11-01T00:00:00Z`` (UTC with a Z), or ``-``."""
    if value is None:
        return "-"
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def size_text(n: int) -> str:
    """Bytes in kB/MB/GB (powers of 1000, as file browsers show them)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _facts_html(items: list[str]) -> str:
    sep = '<span class="dapframe-sep">·</span>'
    return f'<div class="dapframe-facts">{sep.join(items)}</div>'


class DapResult:
    """A query result as the ``%dap snapshot``/``incremental`` commands show it.

    The HTML repr is a compact table: one line of job facts, then the first rows.

    Parameters
    ----------
    result : QueryResult
        The downloaded job.
    output : str
        What :attr:`frame` gives: ``lazy`` (``polars.LazyFrame``), ``eager``
        (``polars.DataFrame``) or ``result`` (the :class:`~dapframe.QueryResult`).
    limit : int
        Rows shown in the preview (0: facts only).
    elapsed : float, optional
        Seconds the command took.
    bound_to : str, optional
        Notebook variable the frame was bound to.
    view : str, optional
        DuckDB view registered over the result.
    """

    def __init__(self, result: QueryResult, *, output: str = "lazy", limit: int = 10,
                 elapsed: float | None = None, bound_to: str | None = None,
                 view: str | None = None) -> None:
        self.result = result
        self.output = output
        self.limit = limit
        self.elapsed = elapsed
        self.bound_to = bound_to
        self.view = view
        lf = result.scan()
        # Counted now, not in the repr, so that a broken part fails the command, not the display.
        self.rows: int = int(lf.select(_len()).collect().item())
        self.actions: dict[str, int] = {}
        if result.incremental and self.rows:
            counts = lf.group_by("meta.action").agg(_len().alias("n")).collect()
            self.actions = {str(a): int(n) for a, n in counts.iter_rows()}
        self.preview: pl.DataFrame | None = lf.head(limit).collect() if limit > 0 else None
        self.bytes = sum(f.stat().st_size for f in result.files if f.exists())

    @property
    def frame(self) -> Any:
        """The rows as :attr:`output` asks: a LazyFrame, a DataFrame or the QueryResult."""
        if self.output == "eager":
            return self.result.to_polars()
        if self.output == "result":
            return self.result
        return self.result.scan()

    def scan(self) -> pl.LazyFrame:
        """The rows as a ``polars.LazyFrame``."""
        return self.result.scan()

    def to_polars(self) -> pl.DataFrame:
        """The rows as an eager ``polars.DataFrame``."""
        return self.result.to_polars()

    def facts(self) -> list[tuple[str, str]]:
        """The job facts shown above the rows, as (label, value) pairs."""
        r = self.result
        facts = [("table", r.spec.name),
                 ("query", "incremental" if r.incremental else "snapshot")]
        if r.incremental:
            facts += [("since", iso(r.since)), ("until", iso(r.until))]
        else:
            facts.append(("at", iso(r.at)))
        rows = f"{self.rows:,}"
        if self.actions:
            parts = [f"{self.actions.get('U', 0):,} updated"]
            if self.actions.get("D"):
                parts.append(f"{self.actions['D']:,} deleted")
            rows += f" ({', '.join(parts)})"
        facts += [
            ("rows", rows),
            ("parts", f"{len(r.files)} {r.format} ({size_text(self.bytes)})"),
            ("schema", f"v{r.schema_version}"),
            ("job", r.job.id[:8]),
        ]
        if self.elapsed is not None:
            facts.append(("took", f"{self.elapsed:.1f} s"))
        facts.append(("next since", iso(r.watermark)))
        if self.bound_to:
            facts.append(("bound to", f"{self.bound_to} ({_kind(self.output)})"))
        if self.view:
            facts.append(("duckdb view", self.view))
        return facts

    def _repr_html_(self) -> str:
        items = []
        for k, v in self.facts():
            if k == "table":
                items.append(f"<b>{html.escape(v)}</b>")
            elif k == "query":
                items.append(html.escape(v))
            else:
                items.append(f"{html.escape(k)} {html.escape(v)}")
        body = ""
        if self.preview is not None:
            import polars as pl

            with pl.Config(tbl_rows=self.limit, tbl_cols=12, fmt_str_lengths=40):
                body = self.preview._repr_html_()
            if self.rows > self.limit:
                body += (f'<div class="dapframe-facts">first {self.limit} of {self.rows:,} rows '
                         "(%config Dap.display_limit = N)</div>")
        return f'<div class="dapframe-result">{_STYLE}{_facts_html(items)}{body}</div>'

    def __repr__(self) -> str:
        facts = ", ".join(f"{k}={v}" for k, v in self.facts() if k not in ("table", "query"))
        kind = "incremental" if self.result.incremental else "snapshot"
        return f"DapResult({self.result.spec.name} {kind}: {facts})"


def _kind(output: str) -> str:
    return {"lazy": "LazyFrame", "eager": "DataFrame", "result": "QueryResult"}[output]


def _len() -> Any:
    import polars as pl

    return pl.len()


class TableList(list[str]):
    """The tables of a namespace (a plain list of names that draws itself)."""

    def __init__(self, namespace: str, tables: list[str]) -> None:
        super().__init__(tables)
        self.namespace = namespace

    def _repr_html_(self) -> str:
        names = "".join(f"<li>{html.escape(t)}</li>" for t in self)
        head = _facts_html([f"<b>{html.escape(self.namespace)}</b>", f"{len(self)} tables"])
        return (f'<div class="dapframe-tables">{_STYLE}{head}'
                f'<ul style="columns:3;margin:0">{names}</ul></div>')


def _type_text(col: ColumnSchema) -> str:
    if col.kind == "enum":
        return f"enum ({len(col.enum)} values)"
    if col.kind == "decimal":
        return f"decimal({col.precision}, {col.scale})"
    if col.kind == "struct":
        return f"struct ({len(col.fields)} fields)"
    if col.kind == "array":
        return f"array of {col.items or 'string'}"
    if col.kind == "string" and col.max_length:
        return f"string (max {col.max_length:,})"
    return col.kind


class SchemaView:
    """A table schema as ``%dap schema`` shows it: one row per column.

    Attributes
    ----------
    schema : TableSchema
        The parsed schema (types, nullability, enum members).
    """

    def __init__(self, schema: TableSchema) -> None:
        self.schema = schema

    def _repr_html_(self) -> str:
        s = self.schema
        head = _facts_html([f"<b>{html.escape(s.namespace)}.{html.escape(s.table)}</b>",
                            f"schema v{s.version}", f"{len(s.columns)} columns",
                            html.escape(s.title)])
        rows = "".join(
            f"<tr><td>{html.escape(c.name)}</td><td>{html.escape(c.part)}</td>"
            f"<td>{html.escape(_type_text(c))}</td><td>{'yes' if c.nullable else 'no'}</td>"
            f"<td>{html.escape(_short(c.description))}</td></tr>"
            for c in s.columns)
        return (f'<div class="dapframe-schema">{_STYLE}{head}<table class="dapframe-tbl">'
                "<tr><th>column</th><th>part</th><th>type</th><th>nullable</th>"
                f"<th>description</th></tr>{rows}</table></div>")

    def __repr__(self) -> str:
        s = self.schema
        return (f"SchemaView({s.namespace}.{s.table} v{s.version}: "
                f"{', '.join(c.name for c in s.columns)})")


def _short(text: str, width: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


class Message:
    """A short status line (emulator started, clock advanced, settings in use)."""

    def __init__(self, text: str, rows: list[tuple[str, str]] | None = None) -> None:
        self.text = text
        self.rows = rows or []

    def _repr_html_(self) -> str:
        table = ""
        if self.rows:
            table = '<table class="dapframe-tbl">' + "".join(
                f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                for k, v in self.rows) + "</table>"
        return (f'<div class="dapframe-message">{_STYLE}'
                f'<div class="dapframe-facts">{html.escape(self.text)}</div>{table}</div>')

    def __repr__(self) -> str:
        lines = [self.text] + [f"  {k}: {v}" for k, v in self.rows]
        return "\n".join(lines)


class SyncView:
    """The reports of ``%dap sync``: one row per table (rows changed, watermark, time).

    Attributes
    ----------
    reports : list of dapframe.sync.SyncReport
        As the sync returned them.
    """

    def __init__(self, reports: list[Any]) -> None:
        self.reports = reports

    def _repr_html_(self) -> str:
        where = {str(getattr(r, "database", "")) for r in self.reports} - {""}
        head = _facts_html(["<b>sync</b>", f"{len(self.reports)} tables"]
                           + [f"into {html.escape(w)}" for w in sorted(where)])
        rows = "".join(
            f"<tr><td>{html.escape(r.table)}</td><td>{html.escape(r.command)}</td>"
            f"<td>{r.inserted:,}</td><td>{r.updated:,}</td><td>{r.deleted:,}</td>"
            f"<td>{html.escape(iso(r.watermark))}</td><td>{r.duration:.1f} s</td>"
            f"<td>{html.escape(r.error or 'ok')}</td></tr>"
            for r in self.reports)
        return (f'<div class="dapframe-sync">{_STYLE}{head}<table class="dapframe-tbl">'
                "<tr><th>table</th><th>command</th><th>inserted</th><th>updated</th>"
                "<th>deleted</th><th>watermark</th><th>took</th><th>status</th></tr>"
                f"{rows}</table></div>")

    def __repr__(self) -> str:
        lines = [r.summary() if hasattr(r, "summary") else repr(r) for r in self.reports]
        return "\n".join(lines)
