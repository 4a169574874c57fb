"""The worker's keyring on disk: read it, or create it the first time on this machine.

Called by ``streams.worker`` at start (and by in-process tests through
``streams.app.HealerApp``). With ``HEALER_KEYRING_FILE`` set the file must
exist; without it, the first worker of an app id on a machine writes a new
keyring to the default path (``Settings.keyring_path``, mode 0600), so a
laptop, the demo and the tests work without setup while every command is
still signed. A cluster mounts one keyring for all its workers (the chart's
Secret): workers with different keyrings would refuse each other's commands.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile

from healer.keys import Keyring, KeyringError, generate
from healer.settings import Settings

log = logging.getLogger("healer.worker")


def ensure(settings: Settings) -> Keyring:
    """The keyring, created first when it may be (see the module docstring)."""
    path = settings.keyring_path()
    if not settings.keyring_file and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".keyring-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(generate())
            os.chmod(tmp, 0o600)
            try:
                os.link(tmp, path)  # atomic and exclusive: a worker starting beside us keeps one file
                log.warning("created a keyring for app id %s at %s (this machine only; for several "
                            "machines give every worker and operator the same HEALER_KEYRING_FILE)",
                            settings.app_id, path)
            except FileExistsError:
                pass
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    ring = settings.keyring()
    if ring.signing_key() is None:
        raise KeyringError(f"{path}: `sign` names no key: the worker signs its own commands with it")
    if ring.sealing_key() is None:
        log.warning("the keyring %s has no `seal` key: audit records are hash-chained but not "
                    "MAC'd, so whoever can write the audit topic can forge them", path)
    return ring
