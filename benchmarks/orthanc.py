"""A real PACS on loopback for the suites and tests: Debian's Orthanc, with its Modality Worklist and DICOMweb
plugins, in a temporary folder, on free ports; stopped and started again on the same storage (a PACS that goes down
and comes back). Its REST API answers what a PACS administrator would look up: which instances a study holds."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_runtime.tools.ports import free_port

ORTHANC = "Orthanc"
WORKLIST_PLUGIN = Path("/usr/share/orthanc/plugins/libModalityWorklists.so")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")  # Debian package orthanc-dicomweb


class OrthancMissing(RuntimeError):
    """Orthanc is not installed (Debian package ``orthanc``; `make test` installs it)."""


@dataclass
class Orthanc:
    """One Orthanc server: AE ``ORTHANC`` on ``dicom_port``, REST on ``http_port``, worklists in ``worklists``."""

    folder: Path
    ae_title: str = "ORTHANC"
    dicom_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    check_calling: list[str] | None = None  # only these calling AE titles may store (None: any)
    move_destinations: dict[str, int] = field(default_factory=dict)  # AE title -> port on loopback (C-MOVE)
    process: subprocess.Popen | None = None

    @property
    def peer(self) -> str:
        return f"{self.ae_title}@127.0.0.1:{self.dicom_port}"

    @property
    def dicomweb(self) -> str:
        """The DICOMweb root (QIDO-RS, WADO-RS, STOW-RS)."""
        return f"http://127.0.0.1:{self.http_port}/dicom-web"

    @property
    def worklists(self) -> Path:
        return self.folder / "worklists"

    def _config(self) -> dict[str, Any]:
        config = {
            "Name": "test-pacs",
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "storage"),
            "DicomAet": self.ae_title,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": True,
            "Plugins": [str(plugin) for plugin in (WORKLIST_PLUGIN, DICOMWEB_PLUGIN) if plugin.is_file()],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "Worklists": {"Enable": True, "Database": str(self.worklists)},
            "StableAge": 1,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowFindWorklist": True,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowGet": True,
            "DicomAlwaysAllowMove": True,
        }
        modalities = {t.lower(): [t, "127.0.0.1", port] for t, port in self.move_destinations.items()}
        if self.check_calling is not None:
            config["DicomAlwaysAllowStore"] = False
            config["DicomCheckModalityHost"] = False
            modalities |= {t.lower(): [t, "127.0.0.1", 1] for t in self.check_calling}
        if modalities:
            config["DicomModalities"] = modalities
        return config

    def start(self, timeout: float = 30) -> Orthanc:
        if shutil.which(ORTHANC) is None:
            raise OrthancMissing("Orthanc is not installed (Debian package orthanc)")
        self.worklists.mkdir(parents=True, exist_ok=True)
        (self.folder / "orthanc.json").write_text(json.dumps(self._config()))
        log = open(self.folder / "orthanc.log", "a")  # noqa: SIM115 - the process writes it
        self.process = subprocess.Popen([ORTHANC, str(self.folder / "orthanc.json")], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited: {(self.folder / 'orthanc.log').read_text()[-2000:]}")
            try:
                self.get("/system")
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("Orthanc did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        self.process = None

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as answer:
            return json.loads(answer.read())

    def post(self, path: str, body: Any) -> Any:
        data = json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data, method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    def instances(self, study_uid: str, modality: str | None = None) -> list[dict[str, Any]]:
        """The instances Orthanc holds in a study (optionally of one modality), with their main tags."""
        query: dict[str, Any] = {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}, "Expand": True}
        found = self.post("/tools/find", query)
        if modality is not None:
            query = {"Level": "Series", "Expand": True, "Query": {"StudyInstanceUID": study_uid}}
            series = {s["ID"]: s for s in self.post("/tools/find", query)}
            found = [i for i in found if series[i["ParentSeries"]]["MainDicomTags"].get("Modality") == modality]
        return found

    def upload(self, paths: list[Path]) -> int:
        """Store files through the REST API (how an archive is seeded); how many Orthanc accepted."""
        stored = 0
        for path in paths:
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.http_port}/instances", data=path.read_bytes(), method="POST"
            )
            with urllib.request.urlopen(request, timeout=60) as answer:
                stored += json.loads(answer.read()).get("Status") in ("Success", "AlreadyStored")
        return stored

    def file(self, instance_id: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/instances/{instance_id}/file") as answer:
            return answer.read()

    def schedule(self, name: str, item: Any) -> Path:
        """A worklist entry (a dataset with the scheduled procedure step), as the worklist plugin reads them."""
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian, generate_uid

        item.file_meta = FileMetaDataset()
        item.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.31"
        item.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        item.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = self.worklists / f"{name}.wl"
        item.save_as(path, enforce_file_format=True)
        return path
