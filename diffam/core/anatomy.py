"""Published anatomical measurements per vertebra level (C1-L5), with their sources.

Means of adult specimens, rounded to 0.5 mm / 1 degree, entered from the cited
tables (the shape prior and the localiser only need them to about 1 mm:
inter-study differences are of that order); check the originals before reusing
them for anything else. :data:`MEASURED` holds the per-level dimensions,
:data:`DISC_BELOW` the disc heights and :data:`SAGITTAL_TILT` a standing
sagittal profile. The procedural vertebrae built from them are in
:mod:`diffam.authoring.level_params`.

Sources:
    * [P91c] Panjabi MM, Duranceau J, Goel V, Oxland T, Takata K. "Cervical human
      vertebrae: quantitative three-dimensional anatomy of the middle and lower
      regions." Spine 1991;16(8):861-869. Tables 1-4 (C2-C7: endplates, body
      heights, canal, pedicles, processes, facets).
    * [P91t] Panjabi MM, Takata K, Goel V, et al. "Thoracic human vertebrae:
      quantitative three-dimensional anatomy." Spine 1991;16(8):888-901.
      Tables 1-4 (T1-T12).
    * [P92] Panjabi MM, Goel V, Oxland T, et al. "Human lumbar vertebrae:
      quantitative three-dimensional anatomy." Spine 1992;17(3):299-306.
      Tables 1-4 (L1-L5).
    * [P93] Panjabi MM, Oxland T, Takata K, Goel V, Duranceau J, Krag M.
      "Articular facets of the human spine: quantitative three-dimensional
      anatomy." Spine 1993;18(10):1298-1310. Table 1 (facet width and height,
      C3-L5, as also tabulated by Patel et al. 2007, Table 4).
    * [Z00] Zhou SH, McCarthy ID, McGregor AH, Coombs RRH, Hughes SPF.
      "Geometrical dimensions of the lower lumbar vertebrae - analysis of data
      from digitised CT images." Eur Spine J 2000;9:242-248. Table 2 (transverse
      process span and spinous process length, L3-L5).
    * [K16] Kaur K, Singh R, Prasath V, Magu S, Tanwar M. "Computed tomographic-
      based morphometric study of thoracic spine ..." J Clin Orthop Trauma
      2016;7(2):101-108. Results (spinous process angle T1 30 deg, T6 58 deg,
      T12 16 deg; transverse pedicle angle T1 35 deg to T12 -10 deg).
    * [G86] Gilad I, Nissan M. "A study of vertebra and disc geometric relations
      of the human cervical and lumbar spine." Spine 1986;11(2):154-157.
      Table 1 (disc heights).
    * [DH94] Doherty BJ, Heggeness MH. "The quantitative anatomy of the atlas."
      Spine 1994;19(22):2497-2500. Table 1 (C1 outer width and depth, canal,
      lateral masses). [DH95] Doherty BJ, Heggeness MH. "Quantitative anatomy of
      the second cervical vertebra." Spine 1995;20(5):513-517 (C2 body, dens).
"""

from __future__ import annotations

_M_KEYS = (
    "body_width",
    "body_depth",
    "body_height_ant",
    "body_height_post",
    "canal_width",
    "canal_depth",
    "pedicle_width",
    "pedicle_height",
    "pedicle_angle",
    "transverse_span",
    "spinous_length",
    "spinous_angle",
    "facet_angle",
    "sap_width",
)

# Measured quantities per level, columns as _M_KEYS:
#   EPW, EPD, VBHa, VBHp [P91c/P91t/P92 Table 1]; SCW, SCD [Table 3];
#   PDW, PDH, PDIt [Table 2]; TPW [Table 4; Z00 Table 2 for L3-L5];
#   SPL (from the posterior canal wall) and spinous inclination [Table 4; K16 for T];
#   facet angle to the sagittal plane [P93] (coronal ~90 in C/T, towards sagittal in L);
#   facet width [P93 Table 1].
# C1 [DH94]: "body" = anterior arch, canal = whole ring opening (cord + dens).
# C2 [DH95]: body without dens.
_TABLE: dict[str, tuple[float, ...]] = {
    #      EPW   EPD   VBHa  VBHp  SCW   SCD   PDW   PDH   PDIt  TPW   SPL   SPang facet FacW
    "C1": (12.0, 8.0, 10.0, 10.0, 28.0, 30.0, 11.0, 14.0, 30.0, 78.0, 9.0, 5.0, 90.0, 16.0),
    "C2": (17.5, 15.5, 21.0, 20.0, 24.0, 16.0, 8.0, 9.0, 38.0, 57.0, 24.0, 20.0, 85.0, 14.0),
    "C3": (16.0, 15.5, 14.0, 14.0, 23.5, 14.5, 5.5, 7.0, 45.0, 50.0, 18.0, 25.0, 90.0, 11.5),
    "C4": (16.5, 15.5, 13.5, 13.5, 24.0, 14.5, 5.5, 7.0, 46.0, 51.0, 19.0, 25.0, 90.0, 12.0),
    "C5": (17.5, 15.5, 13.0, 13.0, 24.5, 14.5, 5.5, 7.0, 47.0, 52.0, 21.0, 25.0, 90.0, 11.0),
    "C6": (19.5, 16.0, 13.0, 13.0, 24.5, 14.5, 5.5, 7.0, 44.0, 56.0, 27.0, 25.0, 90.0, 12.5),
    "C7": (22.5, 16.5, 14.0, 14.5, 24.0, 14.5, 6.0, 7.0, 38.0, 70.0, 38.0, 25.0, 90.0, 12.5),
    "T1": (26.5, 17.0, 15.0, 15.5, 21.0, 15.0, 8.0, 9.5, 30.0, 72.0, 40.0, 30.0, 85.0, 12.0),
    "T2": (26.0, 19.0, 16.0, 16.5, 17.5, 15.0, 7.0, 11.0, 26.0, 68.0, 41.0, 40.0, 80.0, 11.0),
    "T3": (26.5, 21.0, 16.5, 17.0, 16.5, 14.5, 5.5, 11.5, 20.0, 64.0, 42.0, 48.0, 80.0, 10.0),
    "T4": (27.5, 23.0, 16.5, 17.5, 16.0, 14.5, 4.5, 11.5, 15.0, 62.0, 42.0, 55.0, 80.0, 10.5),
    "T5": (28.5, 24.5, 17.0, 18.0, 16.0, 14.5, 4.5, 11.5, 13.0, 62.0, 42.0, 57.0, 80.0, 9.5),
    "T6": (29.5, 25.5, 17.5, 18.5, 16.0, 15.0, 5.0, 12.0, 11.0, 62.0, 42.0, 58.0, 80.0, 9.5),
    "T7": (30.5, 26.5, 18.0, 19.0, 16.0, 15.0, 5.0, 12.0, 10.0, 61.0, 41.0, 55.0, 80.0, 10.0),
    "T8": (31.5, 27.5, 18.5, 19.5, 16.5, 15.0, 5.5, 12.5, 8.0, 60.0, 39.0, 50.0, 80.0, 10.5),
    "T9": (33.0, 28.0, 19.0, 20.5, 17.0, 15.0, 6.0, 13.5, 7.0, 58.0, 37.0, 42.0, 80.0, 12.0),
    "T10": (35.0, 29.0, 20.0, 21.5, 17.5, 15.0, 6.5, 15.0, 5.0, 55.0, 35.0, 34.0, 75.0, 12.0),
    "T11": (37.5, 29.5, 21.5, 22.5, 19.0, 16.0, 8.0, 16.5, 2.0, 50.0, 33.0, 25.0, 50.0, 11.5),
    "T12": (40.0, 30.5, 22.5, 24.0, 21.5, 16.5, 8.0, 16.0, -2.0, 48.0, 33.0, 16.0, 30.0, 9.5),
    "L1": (40.5, 32.0, 25.5, 26.5, 21.5, 18.0, 8.5, 15.5, 11.0, 71.0, 33.0, 10.0, 25.0, 12.5),
    "L2": (42.5, 33.5, 26.5, 27.0, 22.5, 17.5, 9.0, 15.0, 12.0, 81.0, 33.0, 8.0, 30.0, 12.5),
    "L3": (44.5, 34.5, 27.0, 27.0, 23.0, 17.0, 10.5, 15.0, 15.0, 90.0, 33.0, 6.0, 35.0, 14.0),
    "L4": (47.0, 35.0, 27.0, 26.0, 23.5, 16.5, 13.0, 14.5, 18.0, 86.0, 32.0, 5.0, 40.0, 14.5),
    "L5": (49.0, 35.0, 28.0, 24.5, 25.5, 17.0, 18.0, 14.0, 30.0, 94.0, 29.0, 5.0, 45.0, 15.5),
}

#: Measured quantities, level -> {parameter: value} (mm, degrees); sources in the module doc.
MEASURED: dict[str, dict[str, float]] = {lv: dict(zip(_M_KEYS, row)) for lv, row in _TABLE.items()}


#: Intervertebral disc height below each level (mm): cervical and lumbar [G86] Table 1,
#: thoracic interpolated (model). C1 sits on C2 through the atlanto-axial joints (gap).
DISC_BELOW: dict[str, float] = {
    "C1": 3.0,
    "C2": 5.0,
    "C3": 5.0,
    "C4": 5.5,
    "C5": 5.5,
    "C6": 5.5,
    "C7": 5.0,
    "T1": 4.0,
    "T2": 4.0,
    "T3": 4.0,
    "T4": 4.5,
    "T5": 4.5,
    "T6": 5.0,
    "T7": 5.0,
    "T8": 5.5,
    "T9": 5.5,
    "T10": 6.0,
    "T11": 6.5,
    "T12": 8.0,
    "L1": 10.0,
    "L2": 11.0,
    "L3": 12.0,
    "L4": 12.0,
    "L5": 11.0,
}

#: Sagittal tilt of each vertebra (degrees; positive: superior end tilted anteriorly,
#: towards -y) for a standing profile with about 35 deg thoracic kyphosis (T1-T12),
#: 40 deg lumbar lordosis (L1-L5) and 25 deg cervical lordosis (C2-C7) (model).
SAGITTAL_TILT: dict[str, float] = {
    "C1": -6.0,
    "C2": -3.0,
    "C3": 0.0,
    "C4": 4.0,
    "C5": 8.0,
    "C6": 13.0,
    "C7": 18.0,
    "T1": 20.0,
    "T2": 18.0,
    "T3": 15.0,
    "T4": 12.0,
    "T5": 8.0,
    "T6": 4.0,
    "T7": 0.0,
    "T8": -4.0,
    "T9": -7.0,
    "T10": -10.0,
    "T11": -12.0,
    "T12": -14.0,
    "L1": -13.0,
    "L2": -10.0,
    "L3": -3.0,
    "L4": 6.0,
    "L5": 18.0,
}
