"""What the interop suites share to start a server process: reading its first stdout line."""

import queue
import subprocess
import threading


def first_line(proc: subprocess.Popen, timeout: float, name: str = "server") -> str:
    """The first line `proc` writes to stdout (stripped; "" if none within `timeout` seconds).
    Everything after it is read and dropped in a thread, so the pipe never fills."""
    lines: "queue.Queue[bytes]" = queue.Queue()

    def drain():
        first = True
        for line in iter(proc.stdout.readline, b""):
            if first:
                lines.put(line)
                first = False
        if first:
            lines.put(b"")

    threading.Thread(target=drain, name=f"{name}-stdout", daemon=True).start()
    try:
        return lines.get(timeout=timeout).decode("utf-8", "replace").strip()
    except queue.Empty:
        return ""
