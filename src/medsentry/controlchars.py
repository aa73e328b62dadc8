"""Text from the network or a document, shown without the control characters it may carry.

A host name, a DICOM AE title or an HL7 application name is chosen by whoever sent the packet.
Written raw to a terminal, an ESC sequence (ECMA-48 §5.4 CSI, §8.3.89 OSC) could retitle the
window, recolour or hide text, or move the cursor and overwrite lines; a carriage return could
overwrite a line; Unicode bidirectional controls (UAX #9 §2) could reorder what is shown. In a
log line a newline could forge another line. `printable` shows each of them as an escape.
"""

from __future__ import annotations

import re

# DEL, C1 (ECMA-48 §5.3); LRM/RLM, LRE..RLO, LRI..PDI (UAX #9 §2)
_OTHER = "\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069"
UNSAFE = re.compile(f"[\x00-\x08\x0b-\x1f{_OTHER}]")  # C0 (§5.2) but HT and LF
UNSAFE_IN_LINE = re.compile(f"[\x00-\x08\x0a-\x1f{_OTHER}]")  # and LF: one line stays one


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with terminal controls shown as escapes (`\\x1b`, `\\u202e`); tab and newline kept."""
    return UNSAFE.sub(_escape, text) if UNSAFE.search(text) else text


def one_line(text: str) -> str:
    """`printable`, the newline escaped too (`\\x0a`): for one line of a log."""
    return UNSAFE_IN_LINE.sub(_escape, text) if UNSAFE_IN_LINE.search(text) else text
