"""Gathering a device's vulnerabilities from the store and scoring every device.

For each inventory device (`inventory.store.load_devices`):

1. its own matches against the advisories (`intel.match.match_devices`);
2. when an SBOM is attached to its manufacturer, model and software version
   (`sbom import --device-model`), its components' matches (`intel.match.match_components`);
3. stored VEX statements applied to both (`intel.vex_apply.apply_vex`): what a statement says is
   not_affected or fixed no longer counts;
4. its open controls-audit findings that need no vulnerability to get in (default credentials,
   no authentication, credentials in clear: `weak_authentication` in the weights);
5. `model.score_device` on what remains affected or potentially affected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medsentry.intel.model import AFFECTED, POTENTIAL, Match
from medsentry.intel.sbom_model import DeviceModel
from medsentry.intel.sbom_store import load_components, load_vex, sbom_for_device
from medsentry.intel.vex_apply import VexedMatch, VexIndex, apply_vex, component_key
from medsentry.inventory.model import Device
from medsentry.risk.model import (
    Neighbourhood,
    RiskScore,
    VulnInput,
    Weakness,
    rank,
    score_device,
)
from medsentry.risk.weights import Weights, weights
from medsentry.store import Store

COUNTED = (AFFECTED, POTENTIAL)


def device_model(d: Device) -> DeviceModel | None:
    """The (manufacturer, model, version) an inventory device is, when all three are known."""

    def val(a: Any, *asset_keys: str) -> str:
        if a is not None and a.value:
            return str(a.value)
        for k in asset_keys:
            if d.asset.get(k):
                return str(d.asset[k])
        return ""

    vendor = val(d.vendor, "manufacturer", "vendor")
    model = val(d.model, "model")
    version = val(d.software_version, "software_version", "version")
    if vendor and model and version:
        return DeviceModel(vendor, model, version)
    return None


def device_vulnerabilities(
    store: Store | None,
    index: Any,
    devices: Sequence[Device],
    vex: VexIndex,
) -> dict[str, list[VexedMatch]]:
    """device_id -> its matches (device and SBOM component matches) with VEX applied."""
    from medsentry.intel.match import match_components, match_devices

    out: dict[str, list[VexedMatch]] = {d.device_id: [] for d in devices}
    models = {d.device_id: device_model(d) for d in devices}
    dev_models = {k: v for k, v in models.items() if v is not None}
    for m in match_devices(index, devices):
        out.setdefault(m.device_id, []).extend(apply_vex([m], vex, devices=dev_models))
    if store is None:
        return out
    sbom_cache: dict[DeviceModel, list[VexedMatch]] = {}
    for d in devices:
        dm = models[d.device_id]
        if dm is None:
            continue
        if dm not in sbom_cache:
            rec = sbom_for_device(store, dm.manufacturer, dm.model, dm.version)
            if rec is None:
                sbom_cache[dm] = []
            else:
                comps = load_components(store, rec["id"])
                by_key = {component_key(c): c for c in comps}
                matches = match_components(index, comps)
                sbom_cache[dm] = apply_vex(matches, vex, components=by_key, device=dm)
        out[d.device_id].extend(sbom_cache[dm])
    return out


def vuln_inputs(vexed: Sequence[VexedMatch]) -> list[VulnInput]:
    out = []
    for v in vexed:
        if v.status not in COUNTED:
            continue
        m: Match = v.match
        out.append(
            VulnInput(
                id=m.advisory_id,
                status=v.status,
                cves=m.cves,
                cvss_vectors=m.cvss_vectors,
                kev=m.kev,
                epss=m.epss,
                confidence=m.confidence,
                via=f"component {m.component}" if m.component else "device match",
            )
        )
    return out


def open_weaknesses(store: Store, w: Weights) -> dict[str, list[Weakness]]:
    """device_id -> its open controls findings of the types the weights count."""
    from medsentry.controls.store import FindingFilter, list_findings

    if not w.weak_auth:
        return {}
    out: dict[str, list[Weakness]] = {}
    for f in list_findings(store, FindingFilter(types=tuple(w.weak_auth))):
        out.setdefault(f.device_id, []).append(Weakness(f.type, f.subject))
    return out


def assess(
    store: Store,
    devices: Sequence[Device] | None = None,
    index: Any = None,
    w: Weights | None = None,
) -> list[RiskScore]:
    """Every device's risk score, highest first."""
    from medsentry.inventory.store import load_devices

    w = w or weights()
    all_devices = load_devices(store)
    devices = all_devices if devices is None else devices
    if index is None:
        from medsentry.intel.store import load_index

        index = load_index(store)
    vex = VexIndex(load_vex(store))
    hood = Neighbourhood(all_devices or devices, w)
    vulns = device_vulnerabilities(store, index, devices, vex)
    weak = open_weaknesses(store, w)
    return rank(
        score_device(d, vuln_inputs(vulns.get(d.device_id, [])), hood, w, weak.get(d.device_id, ()))
        for d in devices
    )
