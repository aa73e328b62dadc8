"""DICOM upper layer (PS3.8) and DIMSE (PS3.7) dissector; registers "dicom" and "dicom-tls"."""

from medsentry.protocols.dicom.dissector import DicomDissector
from medsentry.protocols.dicom.tls import DicomTlsDissector
from medsentry.protocols.registry import register_stream

register_stream("dicom", DicomDissector)
register_stream("dicom-tls", DicomTlsDissector)

__all__ = ["DicomDissector", "DicomTlsDissector"]
