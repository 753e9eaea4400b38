"""Procedural vertebra parameters per level (C1-L5) from the published measurements.

The tables turn the morphometry of :mod:`diffam.core.anatomy` into
:class:`diffam.authoring.vertebra_shape.VertebraParams`. Two kinds of numbers:

* *measured* quantities (:data:`diffam.core.anatomy.MEASURED`, with the
  sources cited there).
* *model* quantities (:func:`_model_params`): sizes of the primitives that the
  studies do not report (lamina height, process thicknesses, blend radius,
  superellipse exponents ...), set per region as simple proportions of the
  measured ones.

For L1-L5 the measured values are then refined by :data:`LUMBAR_FIT`, a fit of
the procedural model to open statistical mean shapes (see that table): the
generator stays parametric, the fitted numbers are listed beside the literature
ones.

Simplifications (all levels): no transverse foramina (C1-C7), no rib facets
(T1-T12), no endplate concavity, straight transverse processes. C1 is modelled
with the same primitives as the other levels (genus 1 is required): the
"body" is the anterior arch, the pedicles are the lateral masses, the laminae
the posterior arch and the spinous process the posterior tubercle. C2 adds a dens.
"""

from __future__ import annotations

from diffam.authoring.vertebra_shape import VertebraParams
from diffam.core.anatomy import MEASURED
from diffam.core.labels import STANDARD_LEVELS


def _region(level: str) -> str:
    return {"C": "cervical", "T": "thoracic", "L": "lumbar"}[level[0]]


# Model (unreported) primitive sizes per region. Proportions use H = mean body height,
# SCD = canal depth, SCW = canal width, PDW = pedicle width.
_MODEL = {
    "lumbar": dict(
        body_exponent=2.6,
        body_kidney=3.5,
        body_waist=0.06,
        body_edge=2.5,
        canal_exponent=2.4,
        canal_triangle=0.3,
        lam_h=0.9,
        lam_t=7.0,
        lam_slope=20.0,
        sp_h=0.67,
        sp_tip_h=0.9,
        sp_w=7.0,
        tp_h=11.0,
        tp_t=6.0,
        tp_angle=10.0,
        tp_rise=0.0,
        sap_h=0.37,
        sap_t=8.0,
        iap_d=0.37,
        blend=3.0,
    ),
    "thoracic": dict(
        body_exponent=2.3,
        body_kidney=2.0,
        body_waist=0.05,
        body_edge=2.0,
        canal_exponent=2.1,
        canal_triangle=0.0,
        lam_h=0.95,
        lam_t=6.5,
        lam_slope=25.0,
        sp_h=0.5,
        sp_tip_h=0.45,
        sp_w=6.0,
        tp_h=10.0,
        tp_t=9.0,
        tp_angle=35.0,
        tp_rise=8.0,
        sap_h=0.35,
        sap_t=6.0,
        iap_d=0.3,
        blend=2.5,
    ),
    "cervical": dict(
        body_exponent=3.0,
        body_kidney=1.0,
        body_waist=0.04,
        body_edge=1.5,
        canal_exponent=2.6,
        canal_triangle=0.3,
        lam_h=0.85,
        lam_t=4.5,
        lam_slope=35.0,
        sp_h=0.6,
        sp_tip_h=0.5,
        sp_w=5.0,
        tp_h=7.0,
        tp_t=6.0,
        tp_angle=-25.0,
        tp_rise=-5.0,
        sap_h=0.3,
        sap_t=6.0,
        iap_d=0.25,
        blend=2.0,
    ),
}


def _model_params(level: str, m: dict[str, float]) -> dict[str, float]:
    """Primitive sizes not reported by the studies, as proportions of the measured ones."""
    reg = _region(level)
    c = _MODEL[reg]
    h = 0.5 * (m["body_height_ant"] + m["body_height_post"])
    scd, scw, pdw = m["canal_depth"], m["canal_width"], m["pedicle_width"]
    ped_len = 0.6 * scd
    out = dict(
        body_exponent=c["body_exponent"],
        body_kidney=c["body_kidney"],
        body_waist=c["body_waist"],
        body_edge=c["body_edge"],
        canal_exponent=c["canal_exponent"],
        canal_triangle=c["canal_triangle"],
        pedicle_length=ped_len,
        pedicle_z=0.15 * h,
        lamina_height=c["lam_h"] * h,
        lamina_thickness=c["lam_t"],
        lamina_z=-0.07 * h,
        lamina_slope=c["lam_slope"],
        spinous_height=c["sp_h"] * h,
        spinous_tip_height=c["sp_tip_h"] * h,
        spinous_width=c["sp_w"],
        spinous_bifid=0.0,
        transverse_height=c["tp_h"],
        transverse_thickness=c["tp_t"],
        transverse_angle=c["tp_angle"],
        transverse_rise=c["tp_rise"],
        transverse_z=0.15 * h,
        transverse_y=ped_len + 2.0,
        sap_height=c["sap_h"] * h,
        sap_thickness=c["sap_t"],
        sap_x=0.5 * scw + 3.5,
        sap_y=ped_len + 6.0,
        iap_depth=c["iap_d"] * h,
        iap_x=0.5 * scw + 0.5,
        iap_y=ped_len + 14.0,
        dens_height=0.0,
        dens_radius=5.0,
        uncinate_height=0.0,
        blend=c["blend"],
    )
    if reg == "thoracic":
        # facets lie in a coronal plane on top of the pedicles; processes arise higher
        # (the inferior process lies behind the superior process of the level below)
        out.update(
            sap_x=0.5 * scw + 0.5 * pdw + 1.0,
            sap_y=ped_len + 3.0,
            iap_x=0.5 * scw + 0.5 * pdw + 1.0,
            iap_y=ped_len + 3.0 + c["sap_t"],
            transverse_z=0.25 * h,
            transverse_y=ped_len + 4.0,
        )
    if level in ("T11", "T12"):
        # transitional: short, lumbar-like transverse processes
        out.update(transverse_angle={"T11": 25.0, "T12": 15.0}[level], transverse_rise=0.0)
    if level == "T12":
        # lumbar-like inferior processes, medial to the superior processes of L1
        out.update(iap_x=0.5 * scw + 0.5, iap_y=ped_len + 14.0)
    if reg == "cervical":
        # articular pillars (lateral masses) lateral to the canal; transverse processes
        # arise from the pedicle-body junction and point antero-laterally
        out.update(
            sap_x=0.5 * scw + 0.5 * pdw + 1.0,
            sap_y=ped_len + 1.0,
            iap_x=0.5 * scw + 0.5 * pdw + 1.0,
            iap_y=ped_len + 1.0 + c["sap_t"],
            transverse_y=1.0,
            transverse_z=0.0,
            spinous_bifid=6.0,
            uncinate_height=4.0,
        )
        if level == "C7":
            # no bifid tip; the inferior processes sit behind the superior ones of T1
            out.update(spinous_bifid=0.0, iap_y=ped_len + 4.0 + c["sap_t"])
    if level == "C2":
        out.update(
            dens_height=16.0,
            dens_radius=5.0,
            uncinate_height=0.0,
            sap_height=2.0,
            spinous_bifid=8.0,
            spinous_height=12.0,
            spinous_tip_height=10.0,
            spinous_width=8.0,
        )
    if level == "C1":
        # anterior arch as the "body", lateral masses as "pedicles", posterior arch as "laminae"
        out.update(
            body_exponent=2.2,
            body_kidney=0.0,
            body_edge=1.5,
            pedicle_length=8.0,
            pedicle_z=0.0,
            lamina_height=8.0,
            lamina_thickness=5.5,
            lamina_z=0.0,
            lamina_slope=0.0,
            spinous_height=7.0,
            spinous_tip_height=8.0,
            spinous_width=6.0,
            spinous_bifid=0.0,
            transverse_y=6.0,
            transverse_z=0.0,
            transverse_height=6.0,
            # the articular facets are the top and bottom of the lateral masses:
            # the articular primitives sit inside the "pedicles"
            sap_height=1.0,
            sap_thickness=10.0,
            sap_x=0.5 * scw + 3.5,
            sap_y=4.0,
            iap_depth=1.0,
            iap_x=0.5 * scw + 3.5,
            iap_y=4.0,
            uncinate_height=0.0,
        )
    return out


#: Lumbar refinements (mm, degrees) fitted to open statistical mean shapes: L2-L5 to the
#: mean shapes of Clouthier et al. (morphable lumbar model, 87 patients, MIT licence), L1
#: to a VerSe'19-derived L1 reference surface (``../shared/data/meshes``), by
#: :mod:`diffam.authoring.template_fit` (``python -m diffam.authoring.template_fit --meshes ...``): least
#: squares with a similarity pose, measured values bounded to +-15 % (+-10 deg) of the
#: literature and pulled towards it by a prior, primitive sizes free within a factor 2.
#: Values absent here keep the literature/model value. Only these parameters are stored,
#: no data of those meshes. The fitted mean shapes are wider than the cadaver means of
#: [P92] (body width +10 %) and have thinner laminae than the model default.
LUMBAR_FIT: dict[str, dict[str, float]] = {
    # L1: fit residual 0.72 mm mean surface distance
    "L1": dict(
        body_width=44.7,
        body_depth=33.1,
        body_height_ant=22.3,
        body_height_post=23.1,
        body_exponent=2.5,
        body_kidney=2.8,
        body_edge=2.3,
        canal_width=19.5,
        canal_depth=15.3,
        canal_triangle=1.1,
        pedicle_width=9.8,
        pedicle_height=15.0,
        pedicle_angle=1.0,
        pedicle_length=11.5,
        pedicle_z=5.5,
        lamina_height=11.7,
        lamina_thickness=3.5,
        lamina_z=-5.7,
        lamina_slope=-10.0,
        spinous_length=29.7,
        spinous_height=11.7,
        spinous_tip_height=11.7,
        spinous_width=5.1,
        spinous_angle=14.6,
        transverse_span=62.4,
        transverse_height=6.3,
        transverse_thickness=5.9,
        transverse_angle=24.4,
        transverse_rise=-9.9,
        transverse_z=5.1,
        transverse_y=9.2,
        sap_height=4.8,
        sap_width=10.6,
        sap_thickness=5.8,
        sap_x=18.7,
        sap_y=17.8,
        facet_angle=35.0,
        iap_depth=7.5,
        iap_x=8.7,
        iap_y=16.6,
        blend=5.7,
    ),
    # L2: fit residual 0.82 mm mean surface distance
    "L2": dict(
        body_width=47.4,
        body_depth=36.7,
        body_height_ant=26.9,
        body_height_post=25.8,
        body_exponent=2.5,
        body_kidney=1.8,
        body_waist=0.2,
        body_edge=2.0,
        canal_width=19.1,
        canal_depth=14.9,
        canal_triangle=1.1,
        pedicle_height=15.1,
        pedicle_angle=2.1,
        pedicle_length=6.9,
        pedicle_z=5.1,
        lamina_height=12.8,
        lamina_thickness=3.5,
        lamina_z=-6.1,
        lamina_slope=-6.5,
        spinous_length=28.5,
        spinous_height=17.4,
        spinous_tip_height=20.1,
        spinous_width=3.5,
        spinous_angle=6.5,
        transverse_span=75.8,
        transverse_height=8.6,
        transverse_thickness=3.9,
        transverse_angle=19.2,
        transverse_rise=0.7,
        transverse_z=4.2,
        transverse_y=7.6,
        sap_height=4.9,
        sap_width=14.4,
        sap_thickness=5.6,
        sap_x=16.4,
        sap_y=14.4,
        facet_angle=23.5,
        iap_depth=11.1,
        iap_x=8.8,
        iap_y=12.7,
        blend=5.4,
    ),
    # L3: fit residual 0.82 mm mean surface distance
    "L3": dict(
        body_width=50.1,
        body_depth=37.0,
        body_height_ant=28.5,
        body_height_post=25.0,
        body_exponent=2.4,
        body_kidney=1.8,
        body_waist=0.1,
        body_edge=1.3,
        canal_width=19.6,
        canal_depth=14.5,
        canal_triangle=1.2,
        pedicle_width=11.4,
        pedicle_height=15.1,
        pedicle_angle=7.1,
        pedicle_length=6.8,
        pedicle_z=5.5,
        lamina_height=12.2,
        lamina_thickness=3.5,
        lamina_z=-5.2,
        lamina_slope=-10.0,
        spinous_length=30.6,
        spinous_height=18.2,
        spinous_tip_height=20.1,
        spinous_width=3.5,
        spinous_angle=10.8,
        transverse_span=84.7,
        transverse_height=9.7,
        transverse_thickness=4.4,
        transverse_angle=18.8,
        transverse_rise=0.4,
        transverse_z=4.1,
        transverse_y=6.5,
        sap_height=5.0,
        sap_width=16.1,
        sap_thickness=6.0,
        sap_x=16.9,
        sap_y=13.6,
        facet_angle=29.4,
        iap_depth=11.2,
        iap_x=9.9,
        iap_y=12.1,
        blend=5.2,
    ),
    # L4: fit residual 1.19 mm mean surface distance
    "L4": dict(
        body_width=51.9,
        body_height_ant=29.5,
        body_height_post=25.1,
        body_exponent=2.5,
        body_kidney=1.8,
        body_waist=0.1,
        body_edge=1.3,
        canal_width=22.0,
        canal_depth=14.1,
        pedicle_width=14.4,
        pedicle_height=14.8,
        pedicle_angle=18.7,
        pedicle_length=6.8,
        pedicle_z=5.1,
        lamina_height=20.5,
        lamina_thickness=3.6,
        lamina_z=-4.1,
        lamina_slope=14.7,
        spinous_length=31.6,
        spinous_height=15.8,
        spinous_tip_height=17.9,
        spinous_width=3.6,
        spinous_angle=11.1,
        transverse_span=84.6,
        transverse_height=7.6,
        transverse_thickness=4.2,
        transverse_angle=14.3,
        transverse_rise=9.7,
        transverse_z=1.9,
        transverse_y=7.6,
        sap_height=5.4,
        sap_width=15.1,
        sap_thickness=5.7,
        sap_x=18.1,
        sap_y=14.0,
        facet_angle=42.6,
        iap_depth=7.0,
        iap_x=13.6,
        iap_y=19.1,
        blend=6.0,
    ),
    # L5: fit residual 1.40 mm mean surface distance
    "L5": dict(
        body_width=54.5,
        body_depth=34.8,
        body_height_ant=30.4,
        body_height_post=21.8,
        body_exponent=2.0,
        body_kidney=1.8,
        body_waist=0.3,
        body_edge=1.3,
        canal_width=24.1,
        canal_depth=15.4,
        canal_triangle=1.0,
        pedicle_width=20.7,
        pedicle_angle=35.4,
        pedicle_length=5.2,
        pedicle_z=2.8,
        lamina_height=17.3,
        lamina_thickness=4.2,
        lamina_z=-7.3,
        lamina_slope=9.9,
        spinous_length=25.2,
        spinous_height=15.4,
        spinous_tip_height=11.9,
        spinous_width=3.8,
        spinous_angle=12.4,
        transverse_span=85.7,
        transverse_height=8.4,
        transverse_thickness=7.4,
        transverse_angle=10.1,
        transverse_rise=11.2,
        transverse_z=1.3,
        transverse_y=6.1,
        sap_height=4.9,
        sap_width=16.5,
        sap_thickness=5.3,
        sap_x=19.9,
        sap_y=12.0,
        facet_angle=54.5,
        iap_depth=6.1,
        iap_x=18.3,
        iap_y=21.1,
        blend=6.0,
    ),
}


def level_params(level: str, *, fitted: bool = True) -> VertebraParams:
    """Measurements of one level as :class:`VertebraParams`.

    Args:
        level: ``"C1"`` .. ``"C7"``, ``"T1"`` .. ``"T12"``, ``"L1"`` .. ``"L5"``.
        fitted: Apply the lumbar refinements of :data:`LUMBAR_FIT`.

    Raises:
        KeyError: Unknown level.
    """
    if level not in MEASURED:
        raise KeyError(f"no measurements for level {level!r}; known: {', '.join(STANDARD_LEVELS)}")
    m = dict(MEASURED[level])
    sap_w = m.pop("sap_width")
    vals = {**_model_params(level, {**m, "sap_width": sap_w}), **m, "sap_width": sap_w}
    if fitted and level in LUMBAR_FIT:
        vals.update(LUMBAR_FIT[level])
    return VertebraParams(**vals)
