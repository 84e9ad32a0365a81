"""snapshot.py: judging listings of a table that changes while it is paged (pure; no I/O)."""

from __future__ import annotations

from bot.caches.snapshot import Pass, Verdict, decide, merge, reconcile, shortfall

START = 1_700_000_000_000
OLD = START - 86_400_000


def _row(n: int, stamp: int = OLD) -> dict:
    return {"record_id": f"rec{n}", "fields": {"n": n}, "created_time": OLD, "last_modified_time": stamp}


def _new(n: int) -> dict:
    """A row created half a second after the pass began."""
    return {**_row(n), "created_time": START + 500, "last_modified_time": START + 500}


def _pass(pages: list[tuple[list[int], int]]) -> Pass:
    one = Pass({})
    for numbers, total in pages:
        one.add_page([_row(n) for n in numbers], total, START)
    return one


def test_a_table_that_holds_still_is_accepted_in_one_pass():
    quiet = _pass([([1, 2], 4), ([3, 4], 4)])
    assert not quiet.changed and quiet.complete and decide([quiet]) is Verdict.ACCEPT


def test_a_row_pushed_onto_the_next_page_is_a_duplicate_kept_once():
    # a row inserted before the cursor after page 1: row 2 comes again on page 2
    shifted = _pass([([1, 2], 4), ([2, 3], 5), ([4, 5], 5)])
    assert shifted.duplicates == 1 and list(shifted.records) == ["rec1", "rec2", "rec3", "rec4", "rec5"]
    assert shifted.changed and decide([shifted]) is Verdict.AGAIN


def test_a_deleted_row_moves_the_total_and_a_masked_swap_shows_a_fresh_row():
    deleted = _pass([([1, 2], 4), ([4], 3)])  # row 1 deleted after page 1: row 3 skipped
    assert deleted.complete and deleted.changed and decide([deleted]) is Verdict.AGAIN  # count lies
    # deleted before the cursor, added after it: count and total as before, yet row 3 was skipped
    swap = Pass({})
    swap.add_page([_row(1), _row(2)], 4, START)
    swap.add_page([_row(4), _new(5)], 4, START)
    assert swap.complete and swap.fresh == 1 and swap.changed
    # the next pass sees that row again, unchanged since: not a new change
    again = Pass(swap.stamps())
    again.add_page([_row(2), _row(4)], 4, START + 2000)
    again.add_page([_new(5), _row(6)], 4, START + 2000)
    assert again.fresh == 0 and not again.changed and decide([swap, again]) is Verdict.ACCEPT


def test_a_listing_short_of_its_total_twice_on_a_still_table_is_truncated():
    first, second = _pass([([1, 2], 10)]), _pass([([1, 2], 10)])
    assert decide([first]) is Verdict.AGAIN
    assert decide([first, second]) is Verdict.TRUNCATED
    assert decide([first, _pass([([1, 3], 10)])]) is Verdict.AGAIN  # other rows: it did change


def test_a_table_that_never_holds_still_is_merged_and_checked():
    passes = [_pass([([1, 2], 4), ([2, 3], 5)]), _pass([([1, 3], 4), ([3, 4], 4)]),
              _pass([([3, 4], 4), ([4, 5], 4)])]
    assert decide(passes) is Verdict.RECONCILE
    merged, doubtful = merge(passes)
    assert set(merged) == {"rec1", "rec2", "rec3", "rec4", "rec5"} and doubtful == ["rec1", "rec2"]
    result = reconcile(merged, [_row(1, OLD + 1)], ["rec2"])  # rec1 is still there, rec2 is gone
    assert set(result) == {"rec1", "rec3", "rec4", "rec5"} and result["rec1"]["last_modified_time"] == OLD + 1
    assert shortfall(len(result), passes) is None
    assert "declared 401" in shortfall(4, [_pass([([1, 2], 400), ([3, 4], 401)])])
