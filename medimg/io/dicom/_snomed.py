"""SNOMED CT codes of common segmentation labels, for DICOM SEG segment descriptions.

Each entry gives the segmented property category and type (and a laterality modifier where
the name carries one) as ``(code value, code meaning)`` in the SNOMED CT scheme (``SCT``).
Every code here is taken from pydicom's DICOM code tables (``pydicom.sr.codedict.codes.SCT``,
the keyword is the third item) and a test checks each entry against that table, so none is
typed from memory. Names are matched after :func:`normalize_name` (lower case, spaces and
hyphens as underscores): ``"Liver"``, ``"left kidney"`` and ``"left-kidney"`` are one label.
Labels not listed need a user mapping file (:mod:`medimg.io.dicom.seg`).
"""

from __future__ import annotations

from typing import Final

__all__ = ["CATEGORIES", "MODIFIERS", "ORGANS", "normalize_name"]

Code = tuple[str, str]
"""``(code value, code meaning)`` in SNOMED CT (scheme designator ``SCT``)."""

CATEGORIES: Final[dict[str, tuple[Code, str]]] = {
    "anatomy": (("91723000", "Anatomical Structure"), "AnatomicalStructure"),
    "abnormal": (("49755003", "Morphologically Abnormal Structure"),
                 "MorphologicallyAbnormalStructure"),
}  # fmt: skip
"""Segmented property categories: normal anatomy, and lesions."""

MODIFIERS: Final[dict[str, tuple[Code, str]]] = {
    "left": (("7771000", "Left"), "Left"),
    "right": (("24028007", "Right"), "Right"),
}
"""Laterality modifiers of the segmented property type."""

_ANATOMY: Final[dict[str, tuple[Code, str]]] = {
    "liver": (("10200004", "Liver"), "Liver"),
    "spleen": (("78961009", "Spleen"), "Spleen"),
    "kidney": (("64033007", "Kidney"), "Kidney"),
    "pancreas": (("15776009", "Pancreas"), "Pancreas"),
    "stomach": (("69695003", "Stomach"), "Stomach"),
    "gallbladder": (("28231008", "Gallbladder"), "Gallbladder"),
    "aorta": (("15825003", "Aorta"), "Aorta"),
    "inferior_vena_cava": (("64131007", "Inferior vena cava"), "InferiorVenaCava"),
    "portal_vein": (("32764006", "Portal vein"), "PortalVein"),
    "lung": (("39607008", "Lung"), "Lung"),
    "heart": (("80891009", "Heart"), "Heart"),
    "brain": (("12738006", "Brain"), "Brain"),
    "bladder": (("89837001", "Bladder"), "Bladder"),
    "prostate": (("41216001", "Prostate"), "Prostate"),
    "esophagus": (("32849002", "Esophagus"), "Esophagus"),
    "trachea": (("44567001", "Trachea"), "Trachea"),
    "duodenum": (("38848004", "Duodenum"), "Duodenum"),
    "small_intestine": (("30315005", "Small intestine"), "SmallIntestine"),
    "colon": (("71854001", "Colon"), "Colon"),
    "rectum": (("34402009", "Rectum"), "Rectum"),
    "adrenal_gland": (("23451007", "Adrenal gland"), "AdrenalGland"),
    "thyroid": (("69748006", "Thyroid"), "Thyroid"),
    "uterus": (("35039007", "Uterus"), "Uterus"),
    "spinal_cord": (("2748008", "Spinal cord"), "SpinalCord"),
    "spine": (("421060004", "Spine"), "Spine"),
    "vertebra": (("51282000", "Vertebra"), "Vertebra"),
    "rib": (("113197003", "Rib"), "Rib"),
    "sternum": (("56873002", "Sternum"), "Sternum"),
    "skull": (("89546000", "Skull"), "Skull"),
    "femur": (("71341001", "Femur"), "Femur"),
    "bone": (("272673000", "Bone"), "Bone"),
    "muscle": (("71616004", "Muscle"), "Muscle"),
    "fat": (("256674009", "Fat"), "Fat"),
}
_ABNORMAL: Final[dict[str, tuple[Code, str]]] = {
    "lesion": (("52988006", "Lesion"), "Lesion"),
    "tumor": (("108369006", "Neoplasm"), "Neoplasm"),
    "nodule": (("27925004", "Nodule"), "Nodule"),
    "mass": (("4147007", "Mass"), "Mass"),
    "cyst": (("367643001", "Cyst"), "Cyst"),
}
_ALIASES: Final[dict[str, str]] = {
    "tumour": "tumor",
    "neoplasm": "tumor",
    "urinary_bladder": "bladder",
    "oesophagus": "esophagus",
    "ivc": "inferior_vena_cava",
    "thyroid_gland": "thyroid",
    "vertebral_column": "spine",
    "adrenal": "adrenal_gland",
    "liver_lesion": "lesion",
    "liver_tumor": "tumor",
    "lung_nodule": "nodule",
}

ORGANS: Final[dict[str, tuple[str, tuple[Code, str]]]] = {
    **{name: ("anatomy", entry) for name, entry in _ANATOMY.items()},
    **{name: ("abnormal", entry) for name, entry in _ABNORMAL.items()},
    **{alias: ("anatomy" if target in _ANATOMY else "abnormal",
               (_ANATOMY | _ABNORMAL)[target]) for alias, target in _ALIASES.items()},
}  # fmt: skip
"""Normalized label name -> (category key of :data:`CATEGORIES`, (type code, keyword))."""


def normalize_name(name: str) -> str:
    """The key a label name is looked up under.

    Examples
    --------
    >>> normalize_name(" Left-Kidney ")
    'left_kidney'
    """
    return "_".join(name.strip().lower().replace("-", " ").replace("_", " ").split())
