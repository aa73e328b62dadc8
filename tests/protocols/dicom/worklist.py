"""A dcmtk Modality Worklist SCP (wlmscpfs) fed with worklist files that pydicom writes."""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

# one scheduled step each: (patient name, patient id, modality, scheduled station AE title)
STEPS = (
    ("Quimby^Zyxwvut", "MRN-55501234", "MR", "MR01"),
    ("Smith^Alice", "MRN-55509999", "CT", "CT01"),
)
PERFORMING_PHYSICIAN = "Quack^Doc"


def write_worklist(root: Path, called_ae: str, steps=STEPS) -> Path:
    """`root/<called_ae>/` with a lockfile and one complete .wl file per step (the attributes
    wlmscpfs requires of a worklist file; PS3.4 Table K.6-1)."""
    folder = root / called_ae
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lockfile").touch()
    for i, (name, pid, modality, station) in enumerate(steps):
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName, ds.PatientID = name, pid
        ds.PatientBirthDate, ds.PatientSex = "19230405", "F"
        ds.AccessionNumber = f"ACC{i:04d}"
        ds.ReferringPhysicianName = "Ref^Doc"
        ds.StudyInstanceUID = generate_uid()
        ds.RequestedProcedureID = f"RP{i}"
        ds.RequestedProcedureDescription = f"{modality} exam"
        sps = Dataset()
        sps.Modality = modality
        sps.ScheduledStationAETitle = station
        sps.ScheduledStationName = f"{station} room"
        sps.ScheduledProcedureStepLocation = "Radiology"
        sps.ScheduledProcedureStepStartDate = "20261124"
        sps.ScheduledProcedureStepStartTime = "0800"
        sps.ScheduledPerformingPhysicianName = PERFORMING_PHYSICIAN
        sps.ScheduledProcedureStepID = f"SPS{i}"
        sps.ScheduledProcedureStepDescription = f"{modality} exam"
        ds.ScheduledProcedureStepSequence = [sps]
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.276.0.7230010.3.1.0.1"  # dcmtk's worklist file class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.save_as(folder / f"step{i}.wl", enforce_file_format=True)
    return root


def findscu_worklist(findscu: str, calling: str, called: str, host: str, port: int, modality: str):
    """findscu arguments for a worklist query (-W) on the Scheduled Procedure Step's Modality
    (empty: any modality) and the station AE title, asking for the patient's name."""
    return [
        findscu, "-W", "-aet", calling, "-aec", called, host, str(port),
        "-k", f"ScheduledProcedureStepSequence[0].Modality={modality}",
        "-k", "ScheduledProcedureStepSequence[0].ScheduledStationAETitle",
        "-k", "PatientName",
    ]  # fmt: skip
