#!/usr/bin/env bash
# Installs everything medsentry and its test suite need: Debian packages, then the package.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
DEB_PACKAGES="tshark tcpdump dcmtk libpcap0.8 iproute2 wireshark-common openssl curl openssh-client redis-tools gnupg poppler-utils libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 snmp snmpd tftpd-hpa tftp-hpa nftables iptables lldpd busybox"
# Name-service stacks for the inventory tests (Samba's nmbd, llmnrd, dnsmasq), without the
# packages they only recommend (Samba's would bring Ceph and GlusterFS libraries)
DEB_PACKAGES_NO_RECOMMENDS="samba llmnrd dnsmasq-base"
missing=""
for p in $DEB_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
missing_nr=""
for p in $DEB_PACKAGES_NO_RECOMMENDS; do dpkg -s "$p" >/dev/null 2>&1 || missing_nr="$missing_nr $p"; done
if [ -n "$missing$missing_nr" ]; then
  $SUDO apt-get update -qq
fi
if [ -n "$missing" ]; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
if [ -n "$missing_nr" ]; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing_nr >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check -e '.[dev]'
# Byte-compile the package as a regular (non-editable) pip install does: with
# PYTHONDONTWRITEBYTECODE set, an editable install would recompile every module on every run.
python3 -m compileall -q src/medsentry >/dev/null
# Compile the numba kernels once into their on-disk cache (__pycache__ beside each module), as a
# user's first commands would: every compiled path (captures of each format, the flow models'
# learning and scoring, a live capture when allowed) on inputs it makes itself, into a throw-away
# home and database (never the user's). Without it the first `medsentry demo` spends some 11 s
# compiling, and the first scan of a real capture some 4 s more (medsentry/warmup.py).
python3 -m medsentry.warmup
