"""``lacos-adapters``: list the adapter store, or export an entry as a sentence-transformers folder.

lacos-adapters list                              # the store at $LACOS_ADAPTER_STORE, else ./adapter_store
lacos-adapters list --store adapter_store --json
lacos-adapters export adapter_store/mqp-houlsby-20261124-091500 out/mqp-houlsby
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lacos_lightning.errors import exit_on_user_error


def default_store() -> str:
    return os.environ.get("LACOS_ADAPTER_STORE", "adapter_store")


def _score(entry: dict[str, Any]) -> str:
    """The entry's main test score: average precision on a test split, else its first score."""
    scores = entry.get("scores") or {}
    keys = [k for k in scores if k.endswith("/ap") and "test" in k] or list(scores)
    return f"{keys[0]} {scores[keys[0]]:.2f}" if keys else "-"


def table(entries: list[dict[str, Any]]) -> str:
    """A markdown table of store entries."""
    head = "| id | domain | method | trainable params | base | base weights | test score |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for e in entries:
        base = e["base"]
        name = base["name"] if not base.get("random_init") else f"random {base['random_init'].get('model_type')}"
        params = f"{e['trainable_params']:,} ({e['trainable_pct']:.2f}%)"
        row = [e["id"], e.get("domain") or "-", e["method"], params, name, base["fingerprint"], _score(e)]
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def export_entry(entry: str | Path, out: str | Path) -> Path:
    """Load the entry's base, attach the entry and write a sentence-transformers folder (merged for LoRA/IA3)."""
    from lacos_lightning.export import export_sentence_transformers
    from lacos_lightning.store import encoder_for_entry

    return export_sentence_transformers(encoder_for_entry(entry), out)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lacos-adapters", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="list the adapters in a store")
    listing.add_argument("--store", default=default_store(), help="store folder (default: $LACOS_ADAPTER_STORE)")
    listing.add_argument("--json", action="store_true", help="print the metadata as JSON")
    export = sub.add_parser("export", help="write a sentence-transformers folder with the adapter applied")
    export.add_argument("entry", help="a store entry folder")
    export.add_argument("out", help="output folder")
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point."""
    args = parse_args(argv)
    if args.command == "list":
        from lacos_lightning.store import list_entries

        entries = list_entries(args.store)
        print(json.dumps(entries, indent=2) if args.json else table(entries))
        if not entries:
            print(f"{args.store}: no adapters yet", file=sys.stderr)
        return
    print(export_entry(args.entry, args.out))


if __name__ == "__main__":
    main(sys.argv[1:])
