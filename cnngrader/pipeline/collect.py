"""`nbgrader collect` for a shared hub, where every student can write to the exchange's inbound folder.

nbgrader_config.py installs it (c.ExchangeFactory.collect). nbgrader's own collect trusts what it
finds there: it follows a symlink a student placed in the world-writable folder (and collected the
instructor's solutions as that student's submission), only warns when an entry named alice+... is
owned by mallory, takes the submission time from the entry's name and the student's own
timestamp.txt, and stops for everyone at one FIFO. Here an inbound entry counts only when:

- it is a real folder (lstat: not a symlink, not a FIFO or file), readable, and within
  safefiles.FileLimits;
- the student id of its name is made of [A-Za-z0-9._-] (it becomes a folder and a CSV cell);
- its owner (uid) is the student its name claims, when `check_owner` is on (nbgrader's own switch,
  on by default). On a hub each student is a Unix user, and a student cannot create a file owned by
  another, so the name cannot lie. Where every submission is owned by one account (a test, a
  single-user setup), turn it off (`--ExchangeCollect.check_owner=False`) and the log says once that
  owners are not checked.

Its time is the file system's, not the student's: the latest change time (ctime, which a user
cannot set) of the entry and everything in it. The collected folder's timestamp.txt is rewritten
with it, so the gradebook and late penalties use it. Any entry that does not count is skipped with
one line, and the collect goes on for everyone else. The copy is safefiles.copy_tree: regular
files and folders only, nothing followed.
"""
from __future__ import annotations

import datetime
import os
import pwd
import shutil
import stat

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.exchange.default.collect import ExchangeCollect

from . import csvsafe, safefiles


def owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


class SafeCollect(ExchangeCollect):
    """nbgrader's ExchangeCollect with the checks of the module docstring."""

    def init_src(self):
        if self.coursedir.course_id == "":
            self.fail("No course id specified. Re-run with --course flag.")
        self.course_path = os.path.join(self.root, self.coursedir.course_id)
        self.inbound_path = os.path.join(self.course_path, "inbound")
        if not os.path.isdir(self.inbound_path):
            self.fail(f"Course not found: {self.inbound_path}")
        if not self.check_owner:
            self.log.warning("collect: owners are not checked (ExchangeCollect.check_owner is off): "
                             "any user could hand in under any student's name")
        by_student: dict[str, list[dict]] = {}
        with os.scandir(self.inbound_path) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                record = self._record(entry)
                if record is not None:
                    by_student.setdefault(record["username"], []).append(record)
        self.duedate = self._duedate()
        self.src_records = [self._choose(records) for _, records in sorted(by_student.items())]

    def _record(self, entry: os.DirEntry) -> dict | None:
        """The entry as nbgrader's record (username, filename, timestamp), or None with a line."""
        parts = entry.name.rsplit("+", 3)
        if len(parts) < 3 or parts[1] != self.coursedir.assignment_id:
            return None  # another assignment's, or not a submission
        student = parts[0]
        wanted = self.coursedir.student_id
        if wanted and wanted != "*" and student != wanted:
            return None
        why = csvsafe.student_id_problem(student)
        try:
            st = entry.stat(follow_symlinks=False)
            if not why and not stat.S_ISDIR(st.st_mode):
                why = f"it is {safefiles.kind(st.st_mode)}, not a folder"
            if not why and self.check_owner and owner_name(st.st_uid) != student:
                why = f"it is owned by {owner_name(st.st_uid)}, not by {student}"
            if not why:
                found = safefiles.scan(entry.path)
                changed = max([st.st_ctime, *(os.lstat(os.path.join(entry.path, r)).st_ctime
                                              for r in [*found.files, *found.dirs])])
        except (OSError, safefiles.TooBig) as e:
            why = why or f"it cannot be read or is too big ({getattr(e, 'strerror', None) or e})"
        if why:
            self.log.warning("collect: skipped %r: %s", entry.name, why)
            return None
        when = datetime.datetime.fromtimestamp(changed, datetime.timezone.utc)
        return {"username": student, "filename": entry.name, "timestamp": when}

    def _duedate(self):
        with Gradebook(self.coursedir.db_url, self.coursedir.course_id) as gb:
            try:
                return gb.find_assignment(self.coursedir.assignment_id).duedate
            except MissingEntry:
                return None

    def _choose(self, records: list[dict]) -> dict:
        """The newest entry, or with before_duedate the newest one before the due date if any."""
        records = sorted(records, key=lambda r: r["timestamp"], reverse=True)
        if self.before_duedate and self.duedate is not None:
            due = self.duedate if self.duedate.tzinfo else self.duedate.replace(tzinfo=datetime.timezone.utc)
            early = [r for r in records if r["timestamp"] <= due]
            return early[0] if early else records[0]
        return records[0]

    def do_copy(self, src, dest, log=None):
        """The entry's regular files and folders into dest; its timestamp.txt is the file system's."""
        record = next(r for r in self.src_records if r["filename"] == os.path.basename(src))
        try:
            safefiles.copy_tree(src, dest, label=os.path.basename(src), logger=self.log)
        except (OSError, safefiles.TooBig) as e:
            shutil.rmtree(dest, ignore_errors=True)
            self.log.warning("collect: skipped %r: it could not be copied (%s)", os.path.basename(src), e)
            return
        stamp = os.path.join(dest, "timestamp.txt")
        if os.path.lexists(stamp):
            os.unlink(stamp)
        with open(stamp, "w") as fh:
            fh.write(record["timestamp"].strftime(self.timestamp_format))

    def copy_files(self):
        # nbgrader's copy_files compares with the existing timestamp.txt and checks owners again
        # (with a warning); the checks are done, so its owner check is off for that part.
        check, self.check_owner = self.check_owner, False
        try:
            super().copy_files()
        finally:
            self.check_owner = check
