# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Write a password to a file that nobody else can read, not even for a moment.

Shared by the modules that receive a password from the portal (option ``password_file``).
"""

from __future__ import annotations

import os
import tempfile


def check_password_file(path):
    """Return an input error for ``password_file``, or None. Called before any request."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return "password_file %s is a directory; give a file path" % path
    if not os.path.isdir(directory):
        return "password_file %s: the directory %s does not exist; create it first" % (path, directory)
    if not os.access(directory, os.W_OK | os.X_OK):
        return "password_file %s: the directory %s is not writable" % (path, directory)
    return None


def write_secret_file(path, secret):
    """Write ``secret`` to ``path`` atomically; the temp file is 0600 from birth (mkstemp)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".%s." % os.path.basename(path))
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secret)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
