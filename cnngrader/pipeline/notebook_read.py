"""Reading a submitted notebook that is damaged but gradable, and saying what was repaired.

Two kinds of damage are repaired in place, before anything else reads the notebook:

- bytes that are not UTF-8 (a bad copy, an editor's stray byte): each is decoded as U+FFFD;
- JSON nested deeper than MAX_DEPTH (cell or notebook metadata holding a list of a list of ...,
  which makes a recursive parser fail): each value at that depth is replaced by null.

Each repair becomes one line of a note, shown as the first cell of the notebook (so it is in the
student's feedback) and returned for the log. A file that is still not a notebook is not graded.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat

# Deeper than any notebook nbformat writes (about 10 levels); deep enough for metadata a tool stores.
MAX_DEPTH = 64
NOTE_MARK = "cnngrader_read_note"  # the note cell's metadata key, so that a regrade does not add a second
# A JSON string (skipped whole, so that brackets inside it do not count) or one bracket.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.S)


def decode(raw: bytes) -> tuple[str, str | None]:
    """The text of `raw` as UTF-8, each invalid byte as U+FFFD; and a line saying so, or None."""
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as e:
        first = e.start
    text, bad = _SURROGATE.subn("\ufffd", raw.decode("utf-8", errors="surrogateescape"))
    return text, (f"{bad} byte{'s' if bad != 1 else ''} that {'are' if bad != 1 else 'is'} not UTF-8 (the first at "
                  f"byte {first}) {'were' if bad != 1 else 'was'} read as U+FFFD (\ufffd); check the text there")


_SURROGATE = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of each invalid byte


def limit_depth(text: str, max_depth: int = MAX_DEPTH) -> tuple[str, int]:
    """`text` (JSON) with every array or object that opens at depth max_depth + 1 replaced by null;
    and how many were replaced. One pass over the tokens, no recursion, whatever the nesting."""
    depth, cut_at, cuts, out, last = 0, -1, 0, [], 0
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if tok in "[{":
            depth += 1
            if depth == max_depth + 1 and cut_at < 0:
                cut_at = m.start()
        elif tok in "]}":
            if depth == max_depth + 1 and cut_at >= 0:
                out.append(text[last:cut_at])
                out.append("null")
                last, cut_at = m.end(), -1
                cuts += 1
            depth -= 1
    if not cuts:
        return text, 0
    out.append(text[last:])
    return "".join(out), cuts


def repair(path: str | Path) -> list[str]:
    """Make the notebook at `path` readable where it only has the damage above: rewrite it repaired,
    with a note cell first, and return the note's lines ([] when it was sound). Raises (ValueError,
    nbformat's errors) when it still is not a notebook."""
    path = Path(path)
    raw = path.read_bytes()
    text, bad_bytes = decode(raw)
    text, cuts = limit_depth(text)
    lines = [bad_bytes] if bad_bytes else []
    if cuts:
        lines.append(f"{cuts} value{'s' if cuts != 1 else ''} nested more than {MAX_DEPTH} deep (in the "
                     f"notebook's or a cell's metadata) {'were' if cuts != 1 else 'was'} replaced by null")
    if not lines:
        nbformat.reads(text, as_version=4)  # the usual errors of a corrupt notebook
        return []
    nb = nbformat.reads(text, as_version=4)
    note = "**Read with repairs by the grader.** Your notebook was graded after these repairs:\n\n" + "\n".join(
        f"- {line}" for line in lines)
    cell = nbformat.v4.new_markdown_cell(note)
    cell.metadata[NOTE_MARK] = True
    nb.cells = [cell] + [c for c in nb.cells if not c.get("metadata", {}).get(NOTE_MARK)]
    tmp = path.with_name(path.name + ".repaired")
    tmp.write_text(nbformat.writes(nb), encoding="utf-8")
    tmp.replace(path)
    return lines
