"""The two pack backends write the same history (issue 23, defect 3): with
``pack_backend: packed`` the ``lr`` column recorded the base lr every epoch (0.05, 0.05,
0.05) where the loop backend records the schedule (0.05, 0.0286, 0.00025). Every column
is compared, member by member: the schedule and the counters exactly, the measured
numbers to float32 rounding (the packed model sums in another order)."""

import pytest
from conftest import TRAIN_SETTINGS
from training import train_pack

from resdepth import train

GC = {"every": 1, "inputs": 32, "method": "exact", "probes": 2, "chunk_size": 32}
SETTINGS = {**TRAIN_SETTINGS, "gc": GC}
EXACT = ("epoch", "step", "lr")
MEASURED = ("train_loss", "train_acc", "test_loss", "test_acc", "gc", "gc_stderr")

pytestmark = pytest.mark.usefixtures("one_thread")


def cell(scaling):
    base = dict(dataset="digits", arch="mlp", depth=3, scaling=scaling, seed=0, width=16)
    return base | dict(lr=0.05, epochs=3, batch_size=128)


@pytest.mark.parametrize(
    "scalings", [("inv", 0.5, "one"), ("bn",), ("skipinit",)], ids=["plain", "bn", "skipinit"]
)
def test_both_backends_record_the_same_history_column_by_column(digits, scalings):
    cells = [cell(scaling) for scaling in scalings]  # a pack: one family, one seed
    loop = train_pack(cells, digits, SETTINGS)
    packed = train_pack(cells, digits, {**SETTINGS, "pack_backend": "packed"})
    assert len(loop) == len(packed) == len(cells)
    for (_, loop_history, _), (_, packed_history, _) in zip(loop, packed, strict=True):
        assert [row.keys() for row in packed_history] == [row.keys() for row in loop_history]
        assert set(loop_history[-1]) <= set(train.HISTORY_COLUMNS)
        for column in EXACT:
            assert [r.get(column) for r in packed_history] == [
                r.get(column) for r in loop_history
            ], column
        for column in MEASURED:
            for row, alone in zip(packed_history, loop_history, strict=True):
                if column in alone:
                    assert row[column] == pytest.approx(alone[column], rel=1e-4, abs=1e-6), column
        lrs = [row["lr"] for row in loop_history if row["epoch"] > 0]
        assert len(set(lrs)) == len(lrs) == 3 and lrs[-1] < lrs[0] / 10  # the schedule
