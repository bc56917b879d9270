"""Writing a benchmark's results: its rows as JSON lines and its table as Markdown, in one place."""
import json
import os
from typing import Dict, List

import click


def write_report(out: str, rows: List[Dict], table: List[str]) -> None:
    """``out/rows.jsonl`` (one row a line) and ``out/table.md`` (the ``table`` lines), and the table
    on stdout."""
    with open(os.path.join(out, "rows.jsonl"), "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write("\n".join(table) + "\n")
    click.echo("\n".join(table))
