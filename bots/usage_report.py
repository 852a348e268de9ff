"""`imaginebot usage`: spend and images per user and per workspace/server."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

from bots.compose import open_store
from bots.settings import Settings
from core.config import Config
from core.ledger import Ledger

def format_table(title: str, rows: list[dict[str, Any]]) -> str:
    # Relax (Batch API, half price) apart from fast: USD is their sum.
    headers = (title, "jobs", "images", "USD", "fast USD", "relax USD", "relax images", "blocked", "failed")
    body = [(r["name"], str(r["jobs"]), str(r["images"]), f"{r['usd']:.4f}", f"{r['usd'] - r['relax_usd']:.4f}",
             f"{r['relax_usd']:.4f}", str(r["relax_images"]), str(r["blocked"]), str(r["failed"])) for r in rows]  # fmt: skip
    if not body:
        return f"{title}: no jobs in this period."
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in body:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


async def print_usage(settings: Settings, config: Config, *, days: int, as_json: bool) -> int:
    if days < 1:
        raise ValueError("--days must be 1 or more.")
    store = await open_store(settings, must_exist=True)  # reading must not create it
    try:
        ledger = Ledger(store, config)
        since = (date.fromisoformat(ledger.today()) - timedelta(days=days - 1)).isoformat()
        data = await store.run(ledger.usage_sync, since)
    finally:
        await store.close()
    for rows in data.values():
        for row in rows:
            row["fast_usd"] = row["usd"] - row["relax_usd"]
    if as_json:
        print(json.dumps({"since": since, "days": days, **data}, indent=2))
        return 0
    print(f"Usage since {since} ({days} day{'s' if days != 1 else ''}, {config.limits.timezone}):\n")
    print(format_table("user", data["users"]))
    print()
    print(format_table("workspace/server", data["workspaces"]))
    return 0
