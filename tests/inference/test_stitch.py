"""The cell-wise stitcher: when slabs come out, and what memory it holds."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from medimg.inference._stitch import Stitcher, stitch_memory, window_grid
from medimg.inference.gaussian import gaussian_importance_map


def _run(output: str, n_classes: int = 5):
    # 40 x 16 x 20 with 16 x 16 x 8 windows at overlap 0.5: X starts 0, 8, 16, 24; Y one
    # window; Z starts 0, 4, 8, 12. Cells: X cut every 8, Z every 4, Y whole.
    grid = window_grid((40, 16, 20), (16, 16, 8), 0.5)
    stitcher = Stitcher(
        grid, n_classes, gaussian_importance_map(grid.roi), output, torch.device("cpu")
    )
    gen = torch.Generator().manual_seed(0)
    handed = []
    for i, window in enumerate(grid.windows()):
        weighted = torch.randn((n_classes, *grid.roi), generator=gen)
        handed += [(i, slab.z_start, slab.depth) for slab in stitcher.add(weighted, window)]
    return grid, stitcher, handed


def test_each_layer_is_handed_out_by_the_window_that_completes_it() -> None:
    _, stitcher, handed = _run("labels")
    # 4 windows per row. Z 0-4 is covered by row 0 only: done after its 4th window (i = 3).
    # Z 4-8 needs rows 0 and 1 (i = 7), and so on; the last row completes Z 12-16 and 16-20.
    assert handed == [(3, 0, 4), (7, 4, 4), (11, 8, 4), (15, 12, 4), (15, 16, 4)]
    assert stitcher.complete


@pytest.mark.parametrize(("output", "per_voxel"), [("labels", 5), ("probabilities", 6)])
def test_peak_cells_are_the_replayed_figure(output, per_voxel) -> None:
    grid, stitcher, _ = _run(output)
    assert not stitcher.cells  # every cell was finished and freed
    assert stitcher.live_bytes == 0
    # The 5 cells of one Z layer plus the 2 the next row opens before finishing the first.
    expected = 7 * (8 * 16 * 4) * per_voxel * 4
    assert stitcher.peak_bytes == stitch_memory(grid, 5, output).cells == expected


def test_last_two_rows_run_together_when_the_last_window_is_moved_back() -> None:
    # Z 22 with 8-voxel windows every 4: starts 0, 4, 8, 12 and 14 (moved back to end at 22).
    # Run row after row, the row at 12 ends holding Z 12-14 for its last X cell (2 planes x 16
    # voxels), 14-16 and 16-20 whole (6 planes x 40): 272 X-Z voxels of cells. Interleaved,
    # the first column opens 16-20 and 20-22 for X cells 0-1 only (6 planes x 16) and finishes
    # X cell 0 of 12-14 in between: 12-16 whole (160) + 96 - 16 = 240.
    grid = window_grid((40, 16, 22), (16, 16, 8), 0.5)
    assert grid.starts[2] == (0, 4, 8, 12, 14)
    assert grid.interleave_tail
    assert grid.windows()[-4:] == [(16, 0, 12), (16, 0, 14), (24, 0, 12), (24, 0, 14)]
    per_xz = 16 * 5 * 4  # Y voxels x classes x float32
    rows = replace(grid, interleave_tail=False)
    assert stitch_memory(rows, 5, "labels").cells == 272 * per_xz
    assert stitch_memory(grid, 5, "labels").cells == 240 * per_xz
    # Evenly spaced rows stay in plain order: interleaving would open two layers per column.
    assert not window_grid((40, 16, 20), (16, 16, 8), 0.5).interleave_tail
