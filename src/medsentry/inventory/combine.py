"""Combining claims into one attribute value with a confidence (docs/inventory.md, "Combining").

1. Claims are grouped by the value they support, compared by a key (vendors by company:
   "GE MEDICAL SYSTEMS" and "GE Healthcare" are one; categories by taxonomy key).
2. Within a group, claims from the same observation key are one channel (thirty cloud names
   of one maker are one piece of evidence): the channel's strength is its strongest claim.
   Channels are independent: the group's support is their noisy-OR, 1 - prod(1 - c).
3. Categories are a tree: a claim for a parent (imaging) supports its children (imaging.ct)
   and does not contradict them.
4. The strongest group wins (ties: the more specific category, then the larger number of
   channels). Its confidence is its support minus half the support of the strongest
   contradicting group: equal evidence both ways halves it. The contradicting claims are kept
   in `conflicts`, shown with the device.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from medsentry.inventory.fingerprints import Claim
from medsentry.inventory.model import Attribute, Evidence

CONFLICT_WEIGHT = 0.5
MAX_EVIDENCE = 24


def noisy_or(claims: Sequence[Claim]) -> float:
    if len(claims) == 1:
        return claims[0].confidence
    channel: dict[str, float] = {}
    for c in claims:
        if c.confidence > channel.get(c.source, 0.0):
            channel[c.source] = c.confidence
    miss = 1.0
    for p in channel.values():
        miss *= 1.0 - p
    return 1.0 - miss


def _evidence(c: Claim) -> Evidence:
    return Evidence(
        source=c.source, rule=c.rule, observed=c.observed, confidence=c.confidence, ts_ns=c.ts_ns
    )


def _ordered(claims: Sequence[Claim]) -> list[Claim]:
    if len(claims) < 2:
        return list(claims)
    best: dict[tuple[str, str], Claim] = {}
    for c in claims:  # one line per rule and observed value
        k = (c.rule, c.observed)
        if k not in best or c.confidence > best[k].confidence:
            best[k] = c
    return sorted(best.values(), key=lambda c: (-c.confidence, c.rule, c.observed))


def combine(
    claims: Sequence[Claim],
    key: Callable[[str], str] = lambda v: v.casefold(),
    ancestors: Callable[[str], Sequence[str]] | None = None,
    display: Callable[[list[Claim]], str] | None = None,
) -> Attribute | None:
    if not claims:
        return None
    if len(claims) == 1:  # the common case, same result: one group, its claim's own strength
        c = claims[0]
        return Attribute(
            value=display([c]) if display else c.value,
            confidence=round(max(0.0, c.confidence), 3),
            evidence=[_evidence(c)],
            conflicts=[],
        )
    groups: dict[str, list[Claim]] = defaultdict(list)
    for c in claims:
        groups[key(c.value)].append(c)

    def lineage(k: str) -> list[str]:
        return list(ancestors(k)) if ancestors else []

    support: dict[str, float] = {}
    for k in groups:
        pooled = list(groups[k])
        for a in lineage(k):
            pooled += groups.get(a, [])
        support[k] = noisy_or(pooled)
    if len(support) == 1:
        winner = next(iter(support))
    else:
        rank = {
            k: (round(support[k], 9), len(lineage(k)), len({c.source for c in groups[k]}))
            for k in support
        }
        winner = max(rank, key=rank.__getitem__)
    family = {winner, *lineage(winner)}
    rivals = [k for k in groups if k not in family]
    s_alt = max((support[k] for k in rivals), default=0.0)
    conf = max(0.0, support[winner] - CONFLICT_WEIGHT * s_alt)
    own = groups[winner]
    value = display(own) if display else max(own, key=lambda c: c.confidence).value
    supporting = _ordered([c for k in family for c in groups.get(k, [])])
    against = _ordered([c for k in rivals for c in groups[k]])
    # a rival company is named once, as its group is ("Philips" for the registry's "Philips
    # Medical Systems Nederland B.V." and a rule's "Philips"), not once per spelling
    rival_name = {
        k: display(groups[k]) if display else max(groups[k], key=lambda c: c.confidence).value
        for k in rivals
    }
    return Attribute(
        value=value,
        confidence=round(conf, 3),
        evidence=[_evidence(c) for c in supporting[:MAX_EVIDENCE]],
        conflicts=[
            Evidence(
                source=c.source,
                rule=c.rule,
                observed=c.observed,
                value=rival_name[key(c.value)],
                confidence=c.confidence,
                ts_ns=c.ts_ns,
            )
            for c in against[:MAX_EVIDENCE]
        ],
    )
