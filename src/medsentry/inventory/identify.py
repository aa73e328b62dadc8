"""A device's accumulated observations -> the `Device` record with identified attributes.

Derived observation keys added here (the fingerprint rules can use them): `mac.oui` (the IEEE
registry's organization for the MAC), `role`, `listening` ("tcp/104"), `protocol`,
`dicom.forwarder` ("true" when a device forwards the instances it sends: C-MOVE sub-operations,
instances of several makers or modalities, or an archive's; their General Equipment Module
describes the devices that created them, not the sender: see `_forwarder_since`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from medsentry.inventory import ble_companies, oui
from medsentry.inventory.addresses import is_local_admin_mac
from medsentry.inventory.combine import combine
from medsentry.inventory.fingerprints import _PRODUCT_SET, ATTRIBUTES, Claim, Library
from medsentry.inventory.model import NONE, Attribute, Device, Evidence
from medsentry.inventory.state import DeviceState
from medsentry.inventory.taxonomy import Taxonomy

# Keys a DICOM sender's datasets fill; dropped for forwarders (see module doc).
_DATASET_KEYS = (
    "dicom.manufacturer",
    "dicom.model",
    "dicom.software_version",
    "dicom.modality",
    "dicom.station_name",
    "dicom.device_serial",
)
# the services a query/retrieve SCP answers (PS3.4 C.4): C-FIND, C-MOVE, C-GET
_QUERY_RETRIEVE = re.compile(r"^C-(FIND|MOVE|GET) ").match
_LEGAL = re.compile(
    r"\b(?:inc|ltd|co|corp|corporation|corporate|company|ag|gmbh|llc|oy|nv|plc|sa|se|kg|kgaa|"
    r"limited|srl|bv|ab|as|asa|aps|pty|pte|kk|sas|spa|sarl)\b"
)
# Words that do not tell companies apart ("Cisco Systems" is Cisco, "LG Electronics" is LG).
_GENERIC = re.compile(
    r"\b(?:systems?|technolog(?:y|ies)|electronics?|international|foundation|group|holdings?|"
    r"communications?|mobile|industries|industrial|enterprises?|labs?|laboratories|solutions|"
    r"devices?|products?|manufacturing|the|and|of|"
    # nor do the field's words: "Canon Medical Systems" is Canon, "Carestream Health" Carestream
    r"medical|healthcare|health|diagnostics|bio medical|biomedical)\b"
)
# ", a <parent> company" after a registry name names the owner, not the maker.
_PARENT = re.compile(r",\s*an? [^,]* company\s*$")
# Registry names of one maker as its products are named: the IEEE registry says "Hewlett
# Packard" for what HP Inc. and Hewlett Packard Enterprise (split 2015-11-01, HP Inc. 10-K)
# make under the HP name.
_SAME_MAKER = {"hewlett packard": "hp", "hpe": "hp", "hp enterprise": "hp"}
# The city or province an IEEE registry name starts with ("Shenzhen Mindray Bio-Medical
# Electronics Co., Ltd." is Mindray, as rules name it).
_PLACE = re.compile(
    r"^(?:shenzhen|guangzhou|guangdong|beijing|shanghai|hangzhou|zhejiang|jiangsu|suzhou|"
    r"nanjing|wuhan|xiamen|qingdao|chengdu|dongguan|zhuhai|tianjin|fujian|shandong|"
    r"qinhuangdao|ningbo|hefei|changsha|xian|foshan|zhongshan) (?=\w)"
)
MAX_EXTERNAL_PEERS = 200
_SUFFIX = re.compile(
    r"[,.]?\s+(inc|ltd|co|corp|corporation|corporate|company|ag|gmbh|llc|oy|b\.?v|n\.?v|"
    r"s\.?a|s\.?p\.?a|plc|limited|co\.,? ltd)\.?$",
    re.IGNORECASE,
)
_MOBILE = re.compile(r"(?i)^(apple )?(ios|ipados|android)")
_COMPUTER = re.compile(r"(?i)^(windows|macos|mac os)")
# Locally administered prefixes of virtual NICs, not of privacy-randomizing phones/laptops:
# Docker 02:42, QEMU/KVM 52:54:00, VirtualBox host-only 0a:00:27.
_VIRTUAL_PREFIXES = ("02:42:", "52:54:00:", "0a:00:27:")


@functools.lru_cache(maxsize=4096)
def vendor_key(name: str) -> str:
    """One key per company: the vendor alias table's key when it knows the name, else the name
    folded (case, punctuation, legal suffixes off)."""
    from medsentry.intel.normalize import fold, vendor_keys

    try:
        keys = vendor_keys(name)
    except Exception:  # the alias table is another area's data: fall back, never fail here
        keys = frozenset()
    known = [k for k in keys if not k.startswith("unknown:")]
    if len(known) == 1:
        return known[0]
    base = re.sub(r"\([^)]*\)?", " ", fold(name))  # "(Mobile Communications)", cut "(CM"
    base = _PARENT.sub("", base)  # "Aruba, a Hewlett Packard Enterprise Company": Aruba
    folded = " ".join(re.sub(r"[^a-z0-9 ]+", " ", base).split())
    for text in (_PLACE.sub("", folded), folded):  # "Shenzhen Inc" is a company named Shenzhen
        words = _GENERIC.sub(" ", _LEGAL.sub(" ", text)).split()
        if words:
            key = " ".join(words)
            return _SAME_MAKER.get(key, key)
    return name.casefold()


def _vendor_display(claims: list[Claim], names: dict[str, tuple[str, ...]]) -> str:
    # a rule's clean company name over the registry's long organization string
    best = max(claims, key=lambda c: (c.source != "mac.oui", c.value != c.observed, c.confidence))
    if best.value == best.observed:  # a raw string: drop the legal suffix ("Dell Inc." -> Dell)
        short = _SUFFIX.sub("", best.value).strip(" ,.")
        return _known_spelling(short or best.value, names)
    return best.value


def rule_vendor_names(library: Library) -> dict[str, tuple[str, ...]]:
    """Vendor key -> the clean names the library's rules give that company, most used first."""
    if library.vendor_names is None:
        counts: dict[str, dict[str, int]] = {}
        for rule in library.rules:
            v = rule.set.get("vendor")
            if v and "{" not in v:  # "{value}": a template, the observed string itself
                per = counts.setdefault(vendor_key(v), {})
                per[v] = per.get(v, 0) + 1
        library.vendor_names = {
            k: tuple(sorted(per, key=lambda v: -per[v])) for k, per in counts.items()
        }
    return library.vendor_names


_TRANSLIT = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})


def _words(name: str) -> list[str]:
    """A company name's words for comparing spellings: umlauts spelled out (ä = ae, as German
    registrations write them), then the vendor vocabulary's folding (case, accents)."""
    from medsentry.intel.normalize import fold

    return re.findall(r"[a-z0-9]+", fold(name.casefold().translate(_TRANSLIT)))


def _known_spelling(raw: str, names: dict[str, tuple[str, ...]]) -> str:
    """A registry's or a dataset's spelling of a company the rules name ("B.Braun Melsungen",
    "GE MEDICAL SYSTEMS", "Draeger Medical") shown as the rules' name for it, so that one
    company is one vendor across the inventory. Only a spelling: the name's first word leads
    the string, or all its words are in it. A brand its owner acquired ("Hospira", of ICU
    Medical) shares the company's key but keeps its own name. A first word may extend the
    name's ("Drägerwerk" is Dräger's) when the name's is not a short initialism."""
    cands = names.get(vendor_key(raw))
    if not cands:
        return raw
    rw = _words(raw)
    if not rw:
        return raw
    for name in cands:
        nw = _words(name)
        if nw and (
            rw[0] == nw[0] or (len(nw[0]) >= 4 and rw[0].startswith(nw[0])) or set(nw) <= set(rw)
        ):
            return name
    return raw


def observations_of(state: DeviceState) -> dict[str, dict[str, int]]:
    obs = dict(state.observations)  # derived keys are added to this copy only
    t0 = state.first_ns
    if state.mac:
        hit = oui.lookup(state.mac)
        if hit is not None:
            obs["mac.oui"] = {hit[0]: t0}
    if state.roles:  # the state's own tables: identification only reads them
        obs["role"] = state.roles
    if state.listening:
        obs["listening"] = state.listening
    if state.protocols:
        obs["protocol"] = state.protocols
    if state.hostnames:
        names = dict(obs.get("hostname", ()))
        for k, ts in state.hostnames.items():
            names.setdefault(k.split(":", 1)[1], ts)
        obs["hostname"] = names
    cid = obs.get("ble.company_id")
    if cid and "ble.company" not in obs:  # the dissector names only a few: the full SIG table
        _company_names(obs, cid, "ble.company")
    pnp = obs.get("ble.pnp.company_id")
    if pnp:  # a PnP ID's SIG vendor names the product's maker (DIS 1.1 §3.9.1.2), not its chip
        _company_names(obs, pnp, "ble.pnp.company")
    svc = obs.get("ble.service")
    if svc:  # member service UUIDs name the company whose service it is
        _company_names(obs, svc, "ble.service_owner", ble_companies.service_owner)
    if (
        state.mac
        and is_local_admin_mac(state.mac)
        and not state.device_id.startswith("ble:")
        and not state.mac.startswith(_VIRTUAL_PREFIXES)
    ):
        obs["mac.random"] = {"true": t0}
    since = _forwarder_since(obs)
    if since is not None:
        for k in _DATASET_KEYS:
            obs.pop(k, None)
        obs["dicom.forwarder"] = {"true": since}
    return obs


def _forwarder_since(obs: dict[str, dict[str, int]]) -> int | None:
    """When a device that sends DICOM instances showed that it forwards them (None: it never
    did). The General Equipment Module (PS3.3 C.7.5.1) names the equipment that created an
    instance; a sender is not that equipment when it
    - sent a C-STORE sub-operation of a C-MOVE (Move Originator, PS3.7 §9.1.1.1, §9.3.1.1),
    - sent instances of several makers, models, modalities or stations, or
    - is an archive: it also received instances (Storage SCP, PS3.4 B) or answered queries
      or retrievals (C-FIND/C-MOVE/C-GET SCP, PS3.4 C.4)."""
    sent = obs.get("dicom.sent.identity")
    forwarded = obs.get("dicom.forwarded.identity")
    if not sent and not forwarded:
        return None
    times = list((forwarded or {}).values())
    if sent and len(sent) > 1:
        times += sent.values()
    if sent:
        times += obs.get("dicom.sop_class.received", {}).values()
        times += [ts for v, ts in obs.get("dicom.service.scp", {}).items() if _QUERY_RETRIEVE(v)]
    return min(times) if times else None


def _company_names(
    obs: dict[str, dict[str, int]],
    ids: dict[str, int],
    key: str,
    lookup: Callable[[int], str | None] = ble_companies.company,
) -> None:
    """SIG numbers ("0x020E") named from the shipped SIG table (company identifiers, or the
    member service UUIDs' owners), under `key`."""
    names = {}
    for v, ts in ids.items():
        name = lookup(int(v, 16))
        if name:
            names[name] = ts
    if names:
        obs[key] = names


def best_hostname(state: DeviceState) -> str | None:
    """The name from the most trusted source (observe.HOSTNAME_RANK); of its names, the one it
    took last (first seen latest): a device renamed keeps its new name, not its first."""
    if not state.hostnames:
        return None
    names = state.hostnames
    key = min(names, key=lambda k: (int(k.split(":", 1)[0]), -names[k], k))
    return key.split(":", 1)[1]


def identify(
    state: DeviceState,
    library: Library,
    tax: Taxonomy,
    asset: dict[str, str] | None = None,
    extra: list[Claim] | None = None,
) -> Device:
    """`extra`: claims from outside the network (the CMMS list), combined like the rest.

    Devices of one fleet (the same model, firmware, applications) make the same claims: their
    attributes are computed once per identity signature and re-stamped with each device's own
    observation times (`_fleet_attributes`); a device with CMMS claims is always computed.
    """
    obs = observations_of(state)
    attrs = None if extra else _fleet_attributes(obs, state.first_ns, library, tax)
    if attrs is None:
        attrs = _attributes(obs, state.first_ns, library, tax, extra)
    category, vendor, model, software, os_ = attrs
    cat = tax.categories.get(category.value) if category else None
    addrs = state.addresses  # the most recently seen first
    ips = sorted(addrs, key=lambda ip: (-addrs[ip].last_ns, ip)) if len(addrs) > 1 else [*addrs]
    private = state.observations.get("ble.private_address")
    return Device(
        device_id=state.device_id,
        mac=state.mac,
        ips=ips,
        hostname=best_hostname(state),
        first_seen_ns=state.first_ns,
        last_seen_ns=state.last_ns,
        category=category,
        vendor=vendor,
        model=model,
        software_version=software,
        os=os_,
        criticality=cat.criticality if cat else NONE,
        fda_class=cat.fda_class if cat else None,
        medical=cat.medical if cat else False,
        phi_observed=state.phi_ns is not None,
        roles=sorted(state.roles),
        protocols=sorted(state.protocols),
        peers=sorted(state.peers),
        external_peers=sorted(state.external_peers)[:MAX_EXTERNAL_PEERS],
        listening=sorted(state.listening, key=_svc_order) if state.listening else [],
        asset=dict(asset) if asset else {},
        private_addresses=sorted(private, key=lambda a: (private[a], a)) if private else [],
    )


Attributes = tuple[
    Attribute | None, Attribute | None, Attribute | None, Attribute | None, Attribute | None
]


def _attributes(
    obs: dict[str, dict[str, int]],
    first_ns: int,
    library: Library,
    tax: Taxonomy,
    extra: list[Claim] | None,
) -> Attributes:
    """Category, vendor, model, software version and OS from the rules' claims."""
    claims = library.match(obs)
    os_first = combine(_current([c for c in claims if c.attribute == "os"]))
    platform = None
    if os_first is not None and _MOBILE.match(os_first.value):
        platform = "mobile"
    elif os_first is not None and _COMPUTER.match(os_first.value):
        platform = "computer"
    elif obs.get("mac.random"):
        # a randomized (locally administered) Wi-Fi MAC is a phone, tablet or laptop privacy
        # feature (Android 10+, iOS 14+, Windows 10+); medical devices and IoT keep their OUI
        platform = "mobile"
    elif obs.get("app.source"):
        # the capture named the apps it runs (capture/processes.py): a phone (PCAPdroid is
        # Android's) or a computer (Apple's PKTAP and process blocks: macOS, or an iPhone seen
        # through a Mac's rvi interface, which the OS evidence then names)
        platform = "mobile" if "pcapdroid" in obs["app.source"] else "computer"
    if platform is not None:
        # a general-purpose device: the maker's cloud it talks to is a companion app's or a
        # web portal's, not evidence that it is the medical device (see the cloud rules)
        obs["platform"] = {platform: first_ns}
        claims = library.match(obs)
    claims += extra or []
    by_attr: dict[str, list[Claim]] = {a: [] for a in ATTRIBUTES}
    for c in claims:
        if c.attribute == "category" and c.value not in tax.categories:
            continue  # a templated category that named no known key
        by_attr[c.attribute].append(c)
    category = combine(by_attr["category"], key=lambda v: v, ancestors=lambda k: tax.ancestors(k))
    names = rule_vendor_names(library)
    vendor = combine(
        by_attr["vendor"], key=vendor_key, display=lambda cs: _vendor_display(cs, names)
    )
    model = combine(by_attr["model"])
    software = combine(_current(by_attr["software_version"]))
    # the same claims as `os_first` unless the platform or the CMMS added some
    os_ = combine(_current(by_attr["os"])) if platform is not None or extra else os_first
    return category, vendor, model, software, os_


def _current(claims: list[Claim]) -> list[Claim]:
    """A device runs one version of its software at a time: of the values one rule read from
    one observation key, the one first seen latest supersedes the others (an upgrade, whatever
    order the captures were scanned in); the change history keeps the old one."""
    if len(claims) < 2:
        return claims
    latest: dict[tuple[str, str], int] = {}
    for c in claims:
        k = (c.rule, c.source)
        if c.ts_ns is not None and c.ts_ns > latest.get(k, -1):
            latest[k] = c.ts_ns
    return [c for c in claims if c.ts_ns is None or c.ts_ns >= latest[(c.rule, c.source)]]


# -- fleets: one identification per identity signature --

_FLEET_MAX = 100_000  # signatures kept per library before the cache starts over


def _signature(obs: dict[str, dict[str, int]], library: Library) -> tuple:
    """What the rules can see of these observations, in order.

    Values no rule's first condition matches make no claim and are left out; keys a later
    condition tests, and the randomized-MAC flag (the platform), are kept whole. Order is kept
    because ties between equally supported values go to the first claim (`combine`), and so is
    the values' time order, because the latest version supersedes older ones (`_current`).
    """
    later = library.later_keys
    indexed = library.indexed_keys
    parts = []
    for key, values in obs.items():
        if key in later or key == "mac.random":
            whole = tuple(values)
            parts.append((key, whole, _time_order(values, whole)))
            continue
        rkeys = indexed.get(key)
        if rkeys is None:
            rkeys = _indexed_keys(library, key)
        if not rkeys:
            continue
        claims = library.claims_any.get(key)  # value -> does some first condition match it
        if claims is None:
            claims = library.claims_any[key] = {}
        hit = []
        for v in values:
            c = claims.get(v)
            if c is None:
                if len(claims) > 100_000:
                    claims.clear()
                c = claims[v] = any(library.first_hits(r, v) for r in rkeys)
            if c:
                hit.append(v)
        if hit:
            parts.append((key, tuple(hit), _time_order(values, hit)))
    return tuple(parts)


def _time_order(values: dict[str, int], hit: Sequence[str]) -> tuple[int, ...]:
    """Which of several values was first seen latest matters (`_current`): their time order."""
    if len(hit) < 2:
        return ()
    times = [values[v] for v in hit]
    return tuple(sorted(range(len(hit)), key=times.__getitem__))


def _indexed_keys(library: Library, key: str) -> tuple[str, ...]:
    """The rule keys an observation key is matched under ("product" for product names)."""
    cached = library.indexed_keys.get(key)
    if cached is None:
        rkeys = (key, "product") if key in _PRODUCT_SET else (key,)
        cached = library.indexed_keys[key] = tuple(r for r in rkeys if library.indexed(r))
    return cached


def _fleet_attributes(
    obs: dict[str, dict[str, int]], first_ns: int, library: Library, tax: Taxonomy
) -> Attributes:
    """The attributes of this device's fleet, stamped with this device's times."""
    fleet = library.fleet
    sig = (id(tax), _signature(obs, library))
    hit = fleet.get(sig)
    if hit is not None and hit[0] is tax:
        _, attrs, platform = hit
        if platform is not None:
            obs["platform"] = {platform: first_ns}
        stamped = (
            _stamped(attrs[0], obs),
            _stamped(attrs[1], obs),
            _stamped(attrs[2], obs),
            _stamped(attrs[3], obs),
            _stamped(attrs[4], obs),
        )
        if _UNSTAMPABLE not in stamped:
            return stamped  # type: ignore[return-value]
    attrs = _attributes(obs, first_ns, library, tax, None)
    platform = next(iter(obs["platform"])) if "platform" in obs else None
    own = tuple(_stamped(a, obs) for a in attrs)  # the cache keeps objects nobody else holds
    if not any(a is _UNSTAMPABLE for a in own):  # every time traceable to an observation
        if len(fleet) > _FLEET_MAX:
            fleet.clear()
        fleet[sig] = (tax, attrs, platform)
        return own  # type: ignore[return-value]
    return attrs


_UNSTAMPABLE = object()


def _stamped(attr: Attribute | None, obs: dict[str, dict[str, int]]) -> Any:
    """`attr` with each evidence's time taken from `obs`; _UNSTAMPABLE when one is not there
    (a value cut to 200 characters in the evidence)."""
    if attr is None:
        return None
    try:
        evidence = [
            e if (ts := obs[e.source][e.observed]) == e.ts_ns else _replace(e, ts_ns=ts)
            for e in attr.evidence
        ]
        conflicts = [_at(e, obs) for e in attr.conflicts] if attr.conflicts else []
    except KeyError:
        return _UNSTAMPABLE
    return Attribute(
        value=attr.value, confidence=attr.confidence, evidence=evidence, conflicts=conflicts
    )


def _at(e: Evidence, obs: dict[str, dict[str, int]]) -> Evidence:
    ts = obs[e.source][e.observed]
    return e if ts == e.ts_ns else _replace(e, ts_ns=ts)


_replace = msgspec.structs.replace


def _svc_order(svc: str) -> tuple[str, int]:
    proto, _, port = svc.partition("/")
    return proto, int(port) if port.isdigit() else 0
