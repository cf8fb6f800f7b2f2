"""Realistic outputs (prose, code, JSON, markdown) that drift detection must leave alone."""

from __future__ import annotations

import json as _json

PROSE = (
    "The committee met on Tuesday to review the proposed budget for the coming fiscal year. "
    "Several members raised concerns about the projected increase in maintenance costs, "
    "noting that the estimates relied on assumptions from a period of unusually low inflation. "
    "The treasurer responded that the figures had been revised twice since the spring and now "
    "included a contingency reserve of roughly four percent.\n\n"
    "Discussion then turned to the library renovation. The architect presented three options, "
    "ranging from a modest refresh of the reading rooms to a full reconstruction of the east "
    "wing. Each option was accompanied by a schedule and a breakdown of expected disruption to "
    "public services. Members generally favoured the intermediate plan, which would replace the "
    "heating system and improve accessibility without closing the building for more than six "
    "weeks.\n\n"
    "Finally, the committee considered a request from the parks department for additional "
    "seasonal staff. The request was supported by attendance figures from the previous summer, "
    "which showed a marked rise in visitors to the riverside trails. After a brief debate, the "
    "committee agreed to fund four positions on a trial basis and to revisit the decision in "
    "the autumn, when more complete data would be available. In closing, the chair thanked "
    "the staff for preparing the materials and reminded members that written comments on the "
    "draft budget were due by the end of the month. The meeting adjourned shortly after five. "
    "Minutes will be circulated to all members within a week, together with the revised "
    "schedule for the renovation and the parks department's staffing plan. Members who wish to "
    "propose amendments should contact the clerk before the next session, which is expected "
    "to take place in the main hall because of the ongoing work in the council chamber."
)
CODE = '''import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Inventory:
    """Items in stock, keyed by SKU."""

    items: dict[str, int] = field(default_factory=dict)

    def add(self, sku: str, count: int = 1) -> None:
        if count <= 0:
            raise ValueError(f"count must be positive, got {count}")
        self.items[sku] = self.items.get(sku, 0) + count

    def remove(self, sku: str, count: int = 1) -> None:
        have = self.items.get(sku, 0)
        if count > have:
            raise KeyError(f"only {have} of {sku} in stock")
        if count == have:
            del self.items[sku]
        else:
            self.items[sku] = have - count

    def total(self) -> int:
        return sum(self.items.values())

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.items, indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> "Inventory":
        if not path.exists():
            return cls()
        return cls(items=json.loads(path.read_text()))


MAX_RETRIES = 3
DEFAULT_TIMEOUT = 30
STOCK_FILE = Path("stock.json")


async def refill(inventory: Inventory, supplier: str, skus: list[str]) -> int:
    added = 0
    for attempt in range(MAX_RETRIES):
        try:
            await asyncio.sleep(0.1 * attempt)
            for sku in skus:
                inventory.add(sku, 10)
                added += 10
            break
        except ConnectionError:
            continue
    return added


def main() -> None:
    inventory = Inventory.load(STOCK_FILE)
    added = asyncio.run(refill(inventory, "acme", ["A-100", "B-200", "C-300"]))
    print(f"added {added}, total {inventory.total()}")
    inventory.save(STOCK_FILE)


if __name__ == "__main__":
    main()
'''
_names = [
    "Alice Martin",
    "Bob Chen",
    "Carla Diaz",
    "Deepak Rao",
    "Eva Novak",
    "Farid Haddad",
    "Grace Kim",
    "Hugo Weber",
    "Ines Costa",
    "Jonas Berg",
    "Kira Sato",
    "Liam Walsh",
]
_cities = [
    "Lyon",
    "Porto",
    "Osaka",
    "Austin",
    "Gdansk",
    "Leeds",
    "Quito",
    "Perth",
    "Graz",
    "Turku",
    "Cork",
    "Nantes",
]
JSON = _json.dumps(
    {
        "users": [
            {
                "id": 1000 + i,
                "name": n,
                "email": n.split()[0].lower() + "@example.org",
                "city": c,
                "active": i % 3 != 0,
                "score": round(37.5 + i * 4.25, 2),
                "tags": ["beta" if i % 2 else "stable", "tier-" + str(i % 4)],
            }
            for i, (n, c) in enumerate(zip(_names, _cities, strict=True))
        ],
        "generated": "2024-05-01T12:00:00Z",
        "version": 3,
    },
    indent=2,
)
JSON_COMPACT = _json.dumps(_json.loads(JSON))
MARKDOWN = """# Release checklist

Before tagging a release, walk through the following steps. Each one takes a few minutes and
catches the problems we have shipped before.

## Preparation

1. Update the changelog with every user-visible change since the last tag.
2. Bump the version in `pyproject.toml` and in the documentation index.
3. Run the full test suite locally, including the slow integration tests.

## Verification

- Build the wheel and the source distribution from a clean checkout.
- Install the wheel in a fresh virtual environment and import the package.
- Run the example scripts in `examples/` against the installed wheel.
- Check that the documentation builds without warnings.

| Step | Owner | Time |
| --- | --- | --- |
| Changelog | maintainer on duty | 10 min |
| Build | CI | 5 min |
| Publish | release manager | 5 min |

## Publishing

Push the tag and let the release workflow upload the artifacts. Watch the workflow until it
finishes; if it fails halfway, delete the tag on the remote before retrying, otherwise the
next run will refuse to overwrite the existing release.

> Never publish from a laptop: the workflow signs the artifacts, and a manual upload would not.

After the release, announce it in the discussion forum and close the milestone. Move any open
issues to the next milestone with a short comment explaining why they slipped.
"""
NORMAL = {
    "prose": PROSE,
    "code": CODE,
    "json": JSON,
    "json_compact": JSON_COMPACT,
    "markdown": MARKDOWN,
}

TONE_SHIFT = PROSE + "".join(
    f" omg {word} is SO GOOD lol!!! gonna tell my bro about it, {n} stars haha!!"
    for n, word in enumerate(
        ["this", "the park", "the library", "that trail", "the new hall", "the budget", "it"] * 3
    )
)
"""A formal report that turns into shouting and slang (varied, so it is not a loop)."""
