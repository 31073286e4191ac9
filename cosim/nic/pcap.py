"""pcap capture of the NIC's wire traffic (LINKTYPE_ETHERNET, frames with their FCS).

Written with scapy's PcapWriter. Tests write every frame of a run; `MAIA_PCAP=<dir>` (like
MAIA_WAVES) keeps the files. ``check_pcap_tshark`` runs tshark where it is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from scapy.utils import PcapWriter, rdpcap


def pcap_dir() -> Path | None:
    d = os.environ.get("MAIA_PCAP", "").strip()
    return Path(d) if d else None


def write_pcap(path: Path | str, frames, *, tick_ns: float = 6.4) -> Path:
    """Write ``frames`` (bytes, or (time_ns, bytes)) to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with PcapWriter(str(path), linktype=1, sync=True, nano=True) as w:
        w.write_header(None)
        for i, f in enumerate(frames):
            t, data = (f if isinstance(f, tuple) else (i * tick_ns, f))
            w.write_packet(bytes(data), sec=int(t // 1e9), usec=int(t % 1e9))
    return path


def read_pcap(path: Path | str) -> list[bytes]:
    return [bytes(p) for p in rdpcap(str(path))]


def tshark() -> str | None:
    return shutil.which("tshark")


def check_pcap_tshark(path: Path | str) -> list[str]:
    """Dissect ``path`` with tshark; return the problems found (frames not dissected as
    RoCE, malformed-packet or expert warnings). Requires tshark on PATH."""
    exe = tshark()
    if exe is None:
        raise RuntimeError("tshark is not on PATH")
    r = subprocess.run([exe, "-r", str(path), "-T", "fields", "-e", "frame.number",
                        "-e", "frame.protocols", "-e", "_ws.malformed", "-e", "_ws.expert.severity",
                        "-E", "separator=|"], capture_output=True, text=True, timeout=120)
    problems = []
    if r.returncode != 0:
        problems.append(f"tshark exited {r.returncode}: {r.stderr.strip()[:400]}")
    for line in r.stdout.splitlines():
        num, protos, malformed, severity = (line.split("|") + ["", "", ""])[:4]
        if "infiniband" not in protos:
            problems.append(f"frame {num}: not dissected as RoCE ({protos})")
        if malformed:
            problems.append(f"frame {num}: malformed ({protos})")
        if severity and any(s in severity for s in ("error", "warn", "8388608", "6291456")):
            problems.append(f"frame {num}: expert severity {severity} ({protos})")
    return problems
