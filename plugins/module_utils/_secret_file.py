# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Write a password to a file that nobody else can read, not even for a moment.

Shared by the modules that receive a password from the portal (option ``password_file``).
"""

from __future__ import annotations

import os
import stat
import tempfile


def _not_a_regular_file(path):
    """Why ``path`` must not be replaced by the password file, or None (absent or a regular file).

    lstat, not stat: a symlink is refused whatever it points to (the rename would replace the link, not its
    target), and so are devices (/dev/full, /dev/null), FIFOs and sockets, which a rename would destroy.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory; give a file path"
    if stat.S_ISLNK(mode):
        return "is a symbolic link; give the path of the file itself (%s)" % os.path.realpath(path)
    return "is not a regular file (a device, FIFO or socket); give the path of a regular file or of one to create"


def check_password_file(path):
    """Return an input error for ``password_file``, or None. Called before any request."""
    directory = os.path.dirname(os.path.abspath(path))
    problem = _not_a_regular_file(path)
    if problem:
        return "password_file %s %s" % (path, problem)
    if not os.path.isdir(directory):
        return "password_file %s: the directory %s does not exist; create it first" % (path, directory)
    if not os.access(directory, os.W_OK | os.X_OK):
        return "password_file %s: the directory %s is not writable" % (path, directory)
    return None


def write_secret_file(path, secret):
    """Write ``secret`` to ``path`` atomically; the temp file is 0600 from birth (mkstemp)."""
    directory = os.path.dirname(os.path.abspath(path))
    problem = _not_a_regular_file(path)  # again: the path may have changed since the check before the requests
    if problem:
        raise OSError("%s %s" % (path, problem))
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
