"""The domain-adaptation table of ``lacos-report``: per domain, each method's test score against the frozen
base and full fine-tuning, with its share of trainable parameters, training time and peak memory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

METHOD_ORDER = ("none", "full", "lora", "ia3", "houlsby", "pfeiffer")


def _label(r: dict[str, Any]) -> str:
    method = r.get("peft") or "?"
    if method == "none":
        return "frozen base"
    if method == "lora" and r.get("lora_r"):
        return f"lora r={r['lora_r']}"
    if method in ("houlsby", "pfeiffer") and r.get("adapter_size"):
        return f"{method} m={r['adapter_size']}"
    return {"full": "full fine-tuning"}.get(method, method)


def _f(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def domain_rows(rows: Sequence[dict[str, Any]], metric: str = "ap") -> list[dict[str, Any]]:
    """One row per completed domain run: test ``metric`` and its ratio to full fine-tuning and the frozen base."""
    out = []
    for r in rows:
        if not r.get("domain"):
            continue
        scores = r["scores"]
        out.append(
            {
                **r,
                "test_score": scores.get(f"domain/{r['domain']}-test/{metric}"),
                "val_score": scores.get(f"domain/{r['domain']}-val/{metric}"),
            }
        )
    for r in out:
        r["epochs"] = _epochs(r)
    for r in out:  # full fine-tuning with the same data volume and epochs is the reference
        same = [o for o in out if o["domain"] == r["domain"]]
        full = next((o["test_score"] for o in same if o.get("peft") == "full" and _setting(o) == _setting(r)), None)
        base = next((o["test_score"] for o in same if o.get("peft") == "none"), None)
        s = r["test_score"]
        r["vs_full_pct"] = None if None in (s, full) else 100 * (s - full) / full
        r["vs_base"] = None if None in (s, base) else s - base
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(out, key=lambda r: (r["domain"], _setting(r), rank.get(r.get("peft"), 99), r.get("run", "")))


def _epochs(r: dict[str, Any]) -> int | None:
    """Epochs trained, from the examples seen and the data volume (None for an evaluation-only run)."""
    seen, volume = r.get("train_examples"), r.get("data_volume")
    return round(seen / volume) if seen and volume else None


def _setting(r: dict[str, Any]) -> tuple[int, int, int]:
    """Training data volume, epochs and seed; an evaluation-only run (the frozen base) matches every setting."""
    if r.get("peft") == "none":
        return (0, 0, 0)
    return (r.get("data_volume") or 0, r.get("epochs") or 0, r.get("seed") or 0)


def domain_markdown(rows: Sequence[dict[str, Any]], metric: str = "ap") -> str:
    """The table as markdown ("" when no run has a domain)."""
    table = domain_rows(rows, metric)
    if not table:
        return ""
    name = metric.upper() if metric == "ap" else metric
    lines = [
        f"| domain | method | lr | train pairs x epochs | seed | test {name} x100 | vs full (relative) | vs frozen base | val {name} x100 | "
        "trainable params | trainable % | training time (s) | peak RSS (GB) | wall time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        vs_full = "-" if r["vs_full_pct"] is None or r.get("peft") == "full" else f"{r['vs_full_pct']:+.2f}%"
        vs_base = "-" if r["vs_base"] is None or r.get("peft") == "none" else f"{r['vs_base']:+.2f}"
        trainable = r.get("trainable_params") or 0
        cells = [
            r["domain"], _label(r), "-" if r.get("peft") == "none" else _f(r.get("lr"), "g"),
            "-" if r.get("peft") == "none" else f"{r.get('data_volume')} x {r['epochs']}",
            "-" if r.get("peft") == "none" else _f(r.get("seed"), "d"), _f(r["test_score"], ".2f"), vs_full, vs_base, _f(r["val_score"], ".2f"), f"{trainable:,}",
            _f(r.get("trainable_pct"), ".2f"), _f(r.get("train_s"), ".0f"), _f(r.get("peak_rss_gb"), ".2f"),
            _f(r.get("wall_time_s"), ".0f"),
        ]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)
