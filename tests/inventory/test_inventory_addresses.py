"""Address classes: the dotted-quad fast path answers as `ipaddress` does."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.inventory.addresses import classify, classify_by_ipaddress, is_link_local

_octet = st.one_of(
    st.integers(0, 300).map(str),
    st.sampled_from(["0", "00", "01", "010", "255", "256", "", "a", "1 ", "+1", "\u0661"]),
)
_quads = st.tuples(_octet, _octet, _octet, _octet).map(".".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_quads, st.text(alphabet="0123456789.", max_size=16)))
def test_classify_equals_ipaddress(ip: str):
    assert classify(ip) == classify_by_ipaddress(ip)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        _quads,
        st.tuples(
            st.sampled_from(["169", "0169", "169 "]),
            st.sampled_from(["254", "0254"]),
            _octet,
            _octet,
        ).map(".".join),
        st.sampled_from(["fe80::1", "FE80::1", "febf::1", "fec0::1", "169.254.0.1", "", "x"]),
    )
)
def test_is_link_local_equals_ipaddress(ip: str):
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        want = False
    else:
        want = a in ipaddress.ip_network("169.254.0.0/16" if a.version == 4 else "fe80::/10")
    assert is_link_local(ip) is want


def test_classify_boundaries():
    cases = {
        "0.0.0.0": "unspecified",
        "224.0.0.1": "multicast",
        "239.255.255.250": "multicast",
        "255.255.255.255": "multicast",
        "10.1.2.255": "multicast",  # a /24 broadcast
        "10.1.2.3": "local",
        "172.31.255.254": "local",
        "172.32.0.1": "external",
        "100.64.0.1": "local",
        "100.128.0.1": "external",
        "169.254.1.1": "local",
        "127.0.0.1": "local",
        "8.8.8.8": "external",
        "010.1.2.3": "invalid",  # leading zero: ambiguous (octal), rejected as ipaddress does
        "1.2.3": "invalid",
        "fe80::1": "local",
        "2001:db8::1": "external",
    }
    for ip, want in cases.items():
        assert classify(ip) == want == classify_by_ipaddress(ip), ip
