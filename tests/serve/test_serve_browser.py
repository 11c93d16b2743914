"""The page in a real headless Chromium (Debian's, driven by Playwright; never `playwright install`).

A phantom is uploaded through the page with the token typed into it; when the job is shown,
the canvas is screenshot and every sampled pixel of the three 2D planes is traced back to its
voxel through NiiVue's own frac -> mm mapping and the label file's affine: each label's colour
must be drawn only on (or next to) voxels of that label, inside every label it must be drawn,
and away from labels no label colour may appear. The NIfTI downloaded from the page must equal
`medimg predict`'s voxel for voxel. A zip of one DICOM series then shows the service's NIfTI of
the series under its labels (same grid) and offers the DICOM SEG. Nothing may be fetched from
outside 127.0.0.1.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from conftest import Served
from PIL import Image
from scipy import ndimage

from medimg.io import load_volume

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# label colours of viewer.js (PALETTE), drawn at opacity 0.6 over the grey image
_SAMPLE = """() => {
  const nv = window.medimgViewer.nv;
  nv.opts.crosshairWidth = 0;
  nv.drawScene();
  const out = [];
  for (let y = 2; y < nv.canvas.height; y += 5) for (let x = 2; x < nv.canvas.width; x += 5) {
    const frac = nv.canvasPos2frac([x, y]);
    if (frac[0] < 0) continue;  // the 3D tile and the margins
    const mm = nv.frac2mm(frac, 1, true);
    out.push([x, y, mm[0], mm[1], mm[2]]);
  }
  return out;
}"""


def _colour_class(pixels: np.ndarray) -> np.ndarray:
    r, g, b = (pixels[:, i].astype(int) for i in range(3))
    red = r - np.maximum(g, b) > 60  # label 1 (255, 0, 0)
    green = g - np.maximum(r, b) > 60  # label 2 (0, 200, 0)
    blue = b - r > 60  # label 3 (0, 90, 255)
    return np.select([red, green, blue], [1, 2, 3], 0)


def _dicom_zip(image: Path, tmp: Path) -> Path:
    import zipfile

    from medimg.synthetic.dicom import write_dicom_series

    case = load_volume(image)
    series = tmp / "series"
    write_dicom_series(np.rint(case.array[0]), case.affine, series)
    archive = tmp / "series.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(series.iterdir()):
            z.write(path, path.name)
    return archive


@pytest.mark.slow
@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="no /usr/bin/chromium: run scripts/dev.sh setup (it apt-get installs chromium)",
)
def test_page_uploads_shows_labels_and_downloads(
    served: Served, case_images: list[Path], cli_labels: dict[str, Path], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    image = case_images[1]
    outside: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))

        def route(request_route: object) -> None:
            url = request_route.request.url  # type: ignore[attr-defined]
            if url.startswith((served.server.url, "blob:", "data:")):
                request_route.continue_()  # type: ignore[attr-defined]
            else:
                outside.append(url)
                request_route.abort()  # type: ignore[attr-defined]

        page.route("**/*", route)
        page.goto(served.server.url + "/")
        page.wait_for_selector("body[data-state=failed]", timeout=30_000)  # no token yet: 401
        assert "token" in page.text_content("#error")
        page.fill("#token", served.token)
        page.dispatch_event("#token", "change")
        page.wait_for_selector("body[data-models=ready]", timeout=30_000)
        page.set_input_files("#file", str(image))
        page.wait_for_selector("body[data-state=shown]", timeout=180_000)
        assert page.text_content("#status") == "done"
        rows = page.locator("#volumes tbody tr").all_inner_texts()
        assert [row.split("\t")[1] for row in rows] == ["liver", "spleen", "lesion"]
        with page.expect_download() as download:
            page.click("#download-nifti")
        download.value.save_as(tmp_path / "labels.nii.gz")
        samples = np.array(page.evaluate(_SAMPLE))
        png = page.locator("#viewer").screenshot()
        assert page.is_hidden("#seg-link")  # a NIfTI upload has no DICOM SEG
        first = page.get_attribute("body", "data-job")
        # a zip of one DICOM series: the page shows the series (the service's NIfTI of it)
        # under the labels, and offers the DICOM SEG
        page.set_input_files("#file", str(_dicom_zip(case_images[3], tmp_path)))
        shown = f"body[data-state=shown]:not([data-job='{first}'])"  # the page's CSP: no eval
        page.wait_for_selector(shown, timeout=180_000)
        dims = page.evaluate("window.medimgViewer.nv.volumes.map((v) => Array.from(v.hdr.dims))")
        assert page.is_visible("#seg-link")
        dicom_png = page.locator("#viewer").screenshot()
        browser.close()
    assert outside == []
    assert errors == []
    series_shape = load_volume(case_images[3]).spatial_shape
    assert [d[1:4] for d in dims] == [list(series_shape)] * 2  # image, then labels
    rgb = np.asarray(Image.open(io.BytesIO(dicom_png)).convert("RGB")).astype(int)
    grey = (rgb.min(axis=2) > 40) & (rgb.max(axis=2) - rgb.min(axis=2) < 10)
    assert grey.sum() > 2000  # the image is drawn (labels alone leave the tiles black)

    labels = load_volume(tmp_path / "labels.nii.gz")
    expected = load_volume(cli_labels[image.name.removesuffix(".nii.gz")])
    np.testing.assert_array_equal(labels.array, expected.array)

    shot = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    grid = labels.array[0]
    world = np.c_[samples[:, 2:5], np.ones(len(samples))]
    vox = np.rint((np.linalg.inv(labels.affine) @ world.T).T[:, :3]).astype(int)
    inside = np.all((vox >= 0) & (vox < grid.shape), axis=1)
    samples, vox = samples[inside], vox[inside]
    drawn = _colour_class(shot[samples[:, 1].astype(int), samples[:, 0].astype(int)])
    at = tuple(vox.T)
    for value in (1, 2, 3):
        mask = grid == value
        near = ndimage.binary_dilation(mask)[at]
        interior = ndimage.binary_erosion(mask)[at]
        coloured = drawn == value
        if coloured.any():  # drawn only on (or next to, at a boundary) voxels of the label
            assert near[coloured].mean() > 0.98, value
        if interior.sum() >= 20:  # and drawn over the whole inside of it
            assert (drawn[interior] == value).mean() > 0.95, value
    assert (drawn == 1).sum() > 100  # the liver is on screen
    background = ~ndimage.binary_dilation(grid > 0)[at]
    assert (drawn[background] == 0).mean() > 0.98
