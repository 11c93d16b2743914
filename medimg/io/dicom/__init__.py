"""DICOM series ingestion: discovery, checked assembly, selection, X-ray, conversion.

``load_dicom_series(folder, rules=...)`` reads the one volume a folder's selection rules pick;
``read_dicom_header`` gives its grid from headers only; ``scan_dicom_folder`` lists every volume
candidate with the reasons for splits and files left out. Siemens MOSAIC files are unpacked
into slices (:mod:`medimg.io.dicom._mosaic`); the time points of a 4D series are read as one
``(T, X, Y, Z)`` volume, time as channels, by ``read_4d(group)`` for each group of
``time_groups(scan.series)``.

Decoders
--------
pydicom 3 decodes uncompressed data itself and hands compressed transfer syntaxes to plugins.
medimg relies on the pylibjpeg family, one stack that covers every syntax without a C++ build:
``pylibjpeg-libjpeg`` (JPEG baseline/extended and lossless, also JPEG-LS),
``pylibjpeg-openjpeg`` (JPEG 2000), ``pylibjpeg-rle`` (RLE, faster than pydicom's own numpy
decoder), plus ``pyjpegls`` (CharLS, pydicom's preferred JPEG-LS plugin). GDCM would also work
but is one large binary wheel; Pillow decodes JPEG and JPEG 2000 but not lossless JPEG or
JPEG-LS.
"""

from __future__ import annotations

from medimg.io.dicom._fourd import read_4d, time_groups
from medimg.io.dicom.assembly import assemble_volume
from medimg.io.dicom.discovery import DicomScan, DicomSeries, scan_dicom_folder
from medimg.io.dicom.options import DicomReadOptions
from medimg.io.dicom.reading import load_dicom_series, read_dicom_header, read_series
from medimg.io.dicom.selection import SelectionRules, select_series

__all__ = [
    "DicomReadOptions",
    "DicomScan",
    "DicomSeries",
    "SelectionRules",
    "assemble_volume",
    "load_dicom_series",
    "read_4d",
    "read_dicom_header",
    "read_series",
    "scan_dicom_folder",
    "select_series",
    "time_groups",
]
