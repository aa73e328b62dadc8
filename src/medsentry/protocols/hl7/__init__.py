"""HL7 v2 over MLLP dissector; registers "hl7-mllp" (and "hl7", the same framing)."""

from medsentry.protocols.hl7.dissector import Hl7MllpDissector
from medsentry.protocols.registry import register_stream

register_stream("hl7-mllp", Hl7MllpDissector)
register_stream("hl7", Hl7MllpDissector)

__all__ = ["Hl7MllpDissector"]
