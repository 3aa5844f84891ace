"""`releasebot audit verify`: recompute the audit trail's hash chain and name the first break."""

from __future__ import annotations

from contextlib import aclosing
from dataclasses import dataclass
from typing import TextIO

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from bot.cli import CommandError
from bot.cli.export import PAGE, audit_pages
from bot.settings import Settings


@dataclass(frozen=True)
class ChainCheck:
    """What verifying found: rows checked, and the first row that breaks the chain (if any)."""

    rows: int
    broken_id: int | None = None
    broken_release: int | None = None


async def verify_chain(database_url: str, page: int = PAGE) -> ChainCheck:
    """Walk the trail in id order; stop at the first row whose chain does not follow."""
    previous = ""
    count = 0
    # Closed here, not by the garbage collector: leaving at a break must still dispose of the
    # engine inside the loop, or its connections are closed later with a traceback.
    async with aclosing(audit_pages(database_url, None, page)) as pages:
        async for rows in pages:
            for entry in rows:
                if entry.chain != entry.chain_from(previous):
                    return ChainCheck(count, entry.id, entry.release_id)
                previous = entry.chain
                count += 1
    return ChainCheck(count)


async def run_verify(settings: Settings, out: TextIO, err: TextIO) -> int:
    """`releasebot audit verify`: 0 when the chain holds, 1 naming the first broken row."""
    try:
        check = await verify_chain(settings.database_url)
    except SQLAlchemyError as exc:
        shown = make_url(settings.database_url).render_as_string(hide_password=True)
        first = str(getattr(exc, "orig", exc)).splitlines()[0]
        raise CommandError(f"cannot read the audit trail from {shown}: {first} "
                           "(has `releasebot migrate` run?)") from None
    if check.broken_id is None:
        print(f"audit trail intact: {_rows(check.rows)} chained", file=out)
        return 0
    hold = "holds" if check.rows == 1 else "hold"
    print(f"audit trail broken at row {check.broken_id} (REL-{check.broken_release}): it was "
          f"changed, or a row before it was removed or changed; {_rows(check.rows)} before it "
          f"{hold}", file=err)
    return 1


def _rows(count: int) -> str:
    """`1 row`, `2 rows`."""
    return f"{count} row" if count == 1 else f"{count} rows"
