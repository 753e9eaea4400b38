"""Exit statuses of the command-line tools (segment.py; evaluate.py and make_centroids.py alike).

* 0 (:data:`OK`): everything done;
* 1 (:data:`FAILED`): a scan (or a case) failed: unreadable, damaged, too large
  for the memory, no bone, a writer failed; in folder mode, any scan failed;
* 2 (:data:`BAD_SETTINGS`): a setting is wrong (type, range, choice, a missing
  centroid file, a checkpoint of another scan, an output that may not be
  replaced); checked before any work;
* 130 (:data:`STOPPED`): stopped by the user (Ctrl-C); ``resume=true`` continues.
"""

from __future__ import annotations

from diffam.cli.checkpoints import CheckpointMismatch
from diffam.cli.settings_check import SettingsError

OK, FAILED, BAD_SETTINGS, STOPPED = 0, 1, 2, 130


def is_settings_error(error: BaseException) -> bool:
    """Errors a user fixes by changing a setting (exit status 2), not a failed run (1)."""
    return isinstance(error, (FileExistsError, SettingsError, CheckpointMismatch))
