"""Which submissions share code: the instructor's similarity report, reports/similarity/ (`make similarity`).

Per assignment, each student's code is one listing: the code cells of submitted/<student>/<id>/ that are not
locked (cells.student_sources: the solution cells and any cell the student added, so that code moved into
a helper cell still counts). Every listing is fingerprinted with copydetect (winnowing, as MOSS does): its
Python tokenizer (pygments) drops comments and whitespace and replaces every name (variable, attribute,
function, class) by one letter, so renamed variables, changed comments and reordered functions still match.
What every student receives never counts: the fingerprints of the released notebook's code cells (its template
code and its locked cells) are copydetect's boilerplate, and so are passages found in more than a
`common_share` of the class, which the whole class writes alike (MOSS's -m option).

Each listing is compared with every other student's and with the known sources: cnnlib's source, the chapters'
code cells, the instructor's solution (solutions/<id>/<id>.ipynb, solution cells only, never its hidden tests)
and, optionally, a folder of earlier terms' submissions (<folder>/<student>/<id>/*.ipynb). A pair is flagged
when its score (the share of a student's fingerprinted code that the other listing matches) reaches
`threshold` and the matched code is at least `min_match` normalised characters long.

Written into reports/similarity/ (instructor-only: it shows the instructor's solution; tools/publish.py never
copies reports/ and feedback never reads it):
- pairs.csv: student_a, student_b, assignment, cell, score, matched_lines: one row per flagged pair and cell
  of student A holding matched code;
- index.html: the flagged pairs ranked by score, and one page per pair (pairs/<n>.html) with the two listings
  side by side and the matched spans highlighted.
"""
from __future__ import annotations

import copy
import csv
import hashlib
import html
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from traitlets import Float, Integer
from traitlets.config import Configurable

from cnngrader.cells import student_sources
from cnngrader.course import Course, load_course

log = logging.getLogger("cnngrader.pipeline")

OUT_DIR = "similarity"  # under reports/
PAIRS_CSV = "pairs.csv"
CSV_FIELDS = ["student_a", "student_b", "assignment", "cell", "score", "matched_lines"]
INSTRUCTOR = "instructor solution"
CNNLIB = "cnnlib"
EARLIER = "earlier"  # prefix of an earlier term's student: "earlier:<id>"
STUDENT = "student"


@dataclass
class Listing:
    """The code of one student's submission or of one known source, with where each of its cells starts."""

    owner: str  # a student id, INSTRUCTOR, CNNLIB, "chapter <file>" or "earlier:<id>"
    kind: str  # STUDENT, EARLIER or "source"
    code: str
    parts: list[tuple[int, str]]  # (offset of the part's first character in code, its name), ascending
    fingerprint: object = None  # copydetect.CodeFingerprint
    common_free: object = None  # the fingerprint without the class's common passages

    def part_at(self, offset: int) -> tuple[str, int]:
        """(name of the part holding code[offset], offset where that part starts)."""
        i = max(0, int(np.searchsorted([s for s, _ in self.parts], offset, side="right")) - 1)
        return self.parts[i][1], self.parts[i][0]

    def line_of(self, offset: int) -> tuple[str, int]:
        """(part name, 1-based line within the part) of code[offset]."""
        name, start = self.part_at(offset)
        return name, self.code.count("\n", start, offset) + 1


def join_parts(owner: str, kind: str, parts: Iterable[tuple[str, str]]) -> Listing:
    """A listing from (name, source) parts, separated by a blank line."""
    code, starts = "", []
    for name, source in parts:
        if not source.strip():
            continue
        starts.append((len(code), name))
        code += source.rstrip() + "\n\n"
    return Listing(owner, kind, code, starts or [(0, "")])


# ---------------------------------------------------------------------------------------
# reading the listings
# ---------------------------------------------------------------------------------------
def _notebook(folder: Path, aid: str) -> Path | None:
    """The assignment's notebook in a submission folder, or its only notebook under another name."""
    if (folder / f"{aid}.ipynb").is_file():
        return folder / f"{aid}.ipynb"
    found = sorted(folder.glob("*.ipynb"))
    return found[0] if len(found) == 1 else None


def _cell_name(cell: dict, index: int) -> str:
    gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    return str(gid) if gid else f"cell {index + 1} (added)"


def student_listing(path: Path, owner: str, kind: str = STUDENT) -> Listing | None:
    """The student's code in a notebook: its unlocked code cells; None when it is not a readable notebook."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        cells = nb["cells"]
        sources = student_sources(nb)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        log.warning("similarity: %s is not a readable notebook (%s); skipped", path, e)
        return None
    return join_parts(owner, kind, ((_cell_name(cells[i], i), src) for i, src in sources))


def submissions(folder: Path, aid: str, kind: str = STUDENT, prefix: str = "") -> list[Listing]:
    """Every <folder>/<student>/<aid>/ notebook's listing."""
    out = []
    for sdir in sorted(p for p in Path(folder).glob("*") if p.is_dir()):
        path = _notebook(sdir / aid, aid) if (sdir / aid).is_dir() else None
        listing = student_listing(path, prefix + sdir.name, kind) if path else None
        if listing is not None:
            out.append(listing)
    return out


def template_cells(release: Path, aid: str) -> list[str]:
    """Every code cell of the released notebook: what every student receives."""
    nb = json.loads((release / aid / f"{aid}.ipynb").read_text(encoding="utf-8"))
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in nb["cells"] if c["cell_type"] == "code"]


def instructor_listing(course: Course, aid: str) -> Listing:
    """The instructor's solution cells, without the solution markers (never the hidden tests)."""
    from cnngrader.pipeline.authoring import target  # both load jupytext: only when this listing is built
    from cnngrader.pipeline.submissions import solution_code

    nb = json.loads(target(course, aid).read_text(encoding="utf-8"))
    parts = []
    for i, cell in enumerate(nb["cells"]):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell["cell_type"] == "code" and meta.get("solution"):
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            parts.append((_cell_name(cell, i), solution_code(src)))
    return join_parts(INSTRUCTOR, "source", parts)


def course_sources(course: Course) -> list[Listing]:
    """cnnlib's source (one listing, a part per module) and each chapter's code cells (a listing per chapter)."""
    import jupytext  # slow to import: only when the chapters are read

    lib = course.root / "cnnlib"
    if not lib.is_dir():
        import cnnlib  # imports torch: only when the course has no cnnlib/ of its own

        lib = Path(cnnlib.__file__).parent
    out = [join_parts(CNNLIB, "source", ((f"cnnlib/{p.name}", p.read_text(encoding="utf-8"))
                                         for p in sorted(lib.glob("*.py"))))]
    for chapter in dict.fromkeys(a.chapter for a in course.assignments):
        path = course.root / chapter
        if path.is_file():
            cells = [c for c in jupytext.read(path).cells if c.cell_type == "code"]
            out.append(join_parts(f"chapter {chapter}", "source",
                                  ((f"code cell {k + 1}", c.source) for k, c in enumerate(cells))))
    return out


# ---------------------------------------------------------------------------------------
# fingerprints and pairs
# ---------------------------------------------------------------------------------------
@dataclass
class Pair:
    """Two listings that share code. b is another student, an earlier term's student or a known source."""

    assignment: str
    a: Listing
    b: Listing
    score: float  # what is ranked: the larger share of a student's fingerprinted code matched by the other
    shares: tuple[float, float]  # the share of a's and of b's fingerprinted code that the other matches
    matched: int  # normalised characters of a's code in matched passages
    slices: tuple[np.ndarray, np.ndarray]  # (2, n) character ranges of the matched passages in a.code, b.code
    links: list[tuple[str, str, str, str]] = field(default_factory=list)  # (cell of a, lines, cell of b, lines)


def _raw(fp, idx: np.ndarray) -> np.ndarray:
    """Offsets in the listing's code of offsets in copydetect's filtered code (as copydetect's compare_files)."""
    if len(fp.offsets) == 0:
        return idx
    at = np.clip(np.searchsorted(fp.offsets[:, 0], idx), 0, fp.offsets.shape[0] - 1)
    return idx + fp.offsets[:, 1][at]


def _kgram_hashes(text: str, k: int) -> np.ndarray:
    """A 64-bit hash of every k-character substring (copydetect's hashed_kgrams, salted by nothing)."""
    data = text.encode("utf-32-le")
    return np.array([int.from_bytes(hashlib.blake2b(data[4 * i:4 * (i + k)], digest_size=8).digest(), "little",
                                    signed=True) for i in range(len(text) - k + 1)], dtype=np.int64)


def _part_names(fp, listing: Listing) -> dict[int, str]:
    """Position in the filtered code of each of the fingerprint's k-grams -> the name of the part holding it
    (computed once per fingerprint)."""
    if getattr(fp, "part_names", None) is None:
        pos = np.array(sorted({i for idx in fp.hash_idx.values() for i in idx}), dtype=np.int64)
        at = np.searchsorted([s for s, _ in listing.parts], _raw(fp, pos), side="right") - 1
        fp.part_names = {int(i): listing.parts[max(0, int(k))][1] for i, k in zip(pos, at)}
    return fp.part_names


def _lines(listing: Listing, slices: np.ndarray) -> str:
    """"3-9, 12-14": the lines (within their part) that the character ranges cover."""
    spans = []
    starts = [s for s, _ in listing.parts[1:]] + [len(listing.code)]
    for start, end in zip(*slices):
        start = int(start)
        stop = min(int(end), next(s for s in starts if s > start))  # a passage ends with its cell
        first, last = listing.line_of(start)[1], listing.line_of(max(start, stop - 1))[1]
        spans.append((first, last))
    merged: list[list[int]] = []
    for first, last in sorted(spans):
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return ", ".join(f"{f}-{t}" if t > f else str(f) for f, t in merged)


class SimilarityCheck(Configurable):
    """Fingerprints the listings of one assignment with copydetect and finds the pairs worth a look."""

    noise = Integer(25, help="copydetect's noise threshold k: a fingerprint covers k characters of normalised "
                             "code (names are one letter, comments and whitespace gone): about one line"
                    ).tag(config=True)
    guarantee = Integer(30, help="copydetect's guarantee threshold: a shared passage this long is always found "
                                 "(the winnowing window is guarantee - noise + 1)").tag(config=True)
    # 0.8: on the generated class of benchmarks/similarity.py (1,000 students), every disguised copy found from
    # 0.5 on still scores 0.8 or more, while the pairs of independent students flagged fall twelvefold.
    threshold = Float(0.8, help="a pair is flagged from this score on: the share of a student's fingerprinted "
                                "code that the other listing matches").tag(config=True)
    min_match = Integer(100, help="and only when the matched code is at least this many normalised characters "
                                  "(about four lines of code): short solutions that everyone writes alike are "
                                  "never flagged").tag(config=True)
    common_share = Float(0.1, help="a passage found in more than this share of the class (and more than "
                                   "common_min students) is common code, like the template").tag(config=True)
    common_min = Integer(10, help="a passage is never common below this many students").tag(config=True)
    max_pages = Integer(200, help="pair pages written per assignment, best first (pairs.csv lists all)"
                        ).tag(config=True)

    def fingerprint(self, code: str, boilerplate: np.ndarray | None = None, window: int | None = None):
        """copydetect's fingerprint of the code (its tokenizer, its winnowing), with one change: k-grams are
        hashed with BLAKE2b, not Python's hash(), which is salted per process, so that a report (its scores,
        its spans) is the same from one run to the next."""
        from copydetect import CodeFingerprint  # copydetect loads matplotlib: only when fingerprints are made
        from copydetect.utils import filter_code, get_token_coverage, winnow

        window = window or self.guarantee - self.noise + 1
        filtered, offsets = filter_code(code, "listing.py", "python")
        hashes, idx = winnow(_kgram_hashes(filtered, self.noise), window, remove_duplicates=False)
        if boilerplate is not None and len(boilerplate):
            keep = ~np.isin(hashes, boilerplate)
            hashes, idx = hashes[keep], idx[keep]
        fp = CodeFingerprint.__new__(CodeFingerprint)  # the attributes its __init__ sets, filled in here
        fp.filename, fp.raw_code, fp.filtered_code, fp.offsets, fp.k = "listing.py", code, filtered, offsets, self.noise
        fp.hash_idx = {}
        for h, i in zip(hashes.tolist(), idx.tolist()):
            fp.hash_idx.setdefault(h, []).append(i)
        fp.hashes = set(fp.hash_idx)
        fp.token_coverage = get_token_coverage(fp.hash_idx, self.noise, len(filtered))
        return fp

    def boilerplate(self, cells: Iterable[str]) -> np.ndarray:
        """Every fingerprint of the template's cells (no winnowing: all of its k-grams), each cell on its own."""
        hashes: set[int] = set()
        for source in cells:
            hashes |= self.fingerprint(source, window=1).hashes
        return np.array(sorted(hashes), dtype=np.int64)

    def listing_fingerprint(self, listing: Listing, boilerplate: np.ndarray | None = None):
        """The listing's fingerprint, less the fingerprints that straddle two of its cells: cells are joined
        into one listing (so that code moved between cells still matches), but the end of one cell and the
        start of the next one (both template code, often) is no passage anyone wrote."""
        from copydetect.utils import get_token_coverage  # as in fingerprint

        fp = self.fingerprint(listing.code, boilerplate)
        if len(listing.parts) < 2 or not fp.hash_idx:
            return fp
        hashes = list(fp.hash_idx)
        counts = [len(fp.hash_idx[h]) for h in hashes]
        pos = np.fromiter((i for h in hashes for i in fp.hash_idx[h]), dtype=np.int64, count=sum(counts))
        starts = np.array([s for s, _ in listing.parts])
        inside = (np.searchsorted(starts, _raw(fp, pos), side="right")
                  == np.searchsorted(starts, _raw(fp, pos + fp.k - 1), side="right"))
        out = copy.copy(fp)
        out.hash_idx, at = {}, 0
        for h, n in zip(hashes, counts):
            kept = pos[at:at + n][inside[at:at + n]]
            if len(kept):
                out.hash_idx[h] = kept.tolist()
            at += n
        out.hashes = set(out.hash_idx)
        out.token_coverage = get_token_coverage(out.hash_idx, fp.k, len(fp.filtered_code))
        return out

    def _without(self, fp, drop: set[int]):
        """A copy of a fingerprint without these hashes (copydetect's boilerplate removal, after the fact)."""
        from copydetect.utils import get_token_coverage  # as in fingerprint

        out = copy.copy(fp)
        out.hashes = fp.hashes - drop
        out.hash_idx = {h: i for h, i in fp.hash_idx.items() if h not in drop}
        out.token_coverage = get_token_coverage(out.hash_idx, fp.k, len(fp.filtered_code))
        return out

    def common(self, listings: Sequence[Listing]) -> set[int]:
        """Hashes found in more than common_share of these listings (and more than common_min of them)."""
        counts: dict[int, int] = {}
        for item in listings:
            for h in item.fingerprint.hashes:
                counts[h] = counts.get(h, 0) + 1
        limit = max(self.common_min, self.common_share * len(listings))
        return {h for h, n in counts.items() if n > limit}

    def shared(self, left: Sequence[set[int]], right: Sequence[set[int]] | None = None) -> list[tuple[int, int]]:
        """(i, j) of listings with fingerprints in common: left with left (i < j) when right is None, else left
        with right. A sparse listings x fingerprints product, so that a class of 1,000 costs one multiplication."""
        from scipy import sparse  # slow to import: only when pairs are counted

        sets = [*left, *(right or [])]
        lengths = [len(s) for s in sets]
        if not sum(lengths) or not left or (right is not None and not right):
            return []
        flat = np.fromiter((h for s in sets for h in s), dtype=np.int64, count=sum(lengths))
        _, cols = np.unique(flat, return_inverse=True)
        rows = np.repeat(np.arange(len(sets)), lengths)
        m = sparse.csr_matrix((np.ones(len(flat), dtype=np.int32), (rows, cols.ravel())),
                              shape=(len(sets), int(cols.max()) + 1))
        lm = m[:len(left)]
        prod = sparse.triu(lm @ lm.T, k=1) if right is None else lm @ m[len(left):].T
        prod = sparse.coo_matrix(prod)
        # A passage of min_match characters spans at least min_match / noise fingerprints.
        # A flagged pair shares a good part of the shorter listing's fingerprints (the score's share, less a
        # margin for repeated passages), and a passage of min_match characters spans min_match / noise of them.
        sizes = np.array(lengths)
        shorter = sizes[prod.row] if right is not None else np.minimum(sizes[prod.row], sizes[prod.col])
        keep = (prod.data >= max(1, self.min_match // self.noise // 2)) & (prod.data >= 0.5 * self.threshold * shorter)
        return sorted(zip(prod.row[keep].tolist(), prod.col[keep].tolist()))

    def pair(self, aid: str, a: Listing, fa, b: Listing, fb) -> Pair | None:
        """The pair (a, b) when it is flagged (score >= threshold and matched >= min_match), else None."""
        from copydetect import compare_files  # as in fingerprint

        matched, shares, slices = compare_files(fa, fb)
        if not matched:
            return None
        score = float(shares[0] if b.kind == "source" else max(shares))  # a known source is far longer
        if score < self.threshold or matched < self.min_match:
            return None
        out = Pair(aid, a, b, score, (float(shares[0]), float(shares[1])), int(matched),
                   (np.asarray(slices[0], dtype=int), np.asarray(slices[1], dtype=int)))
        out.links = self.links(a, fa, b, fb)
        return out

    def links(self, a: Listing, fa, b: Listing, fb) -> list[tuple[str, str, str, str]]:
        """(cell of a, its matched lines, cell of b, its matched lines) for every two cells sharing fingerprints."""
        from copydetect.utils import get_copied_slices  # as in fingerprint

        groups: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
        part_a, part_b = _part_names(fa, a), _part_names(fb, b)
        for h in fa.hashes & fb.hashes:
            for ia in fa.hash_idx[h]:
                for ib in fb.hash_idx[h]:
                    pos = groups.setdefault((part_a[ia], part_b[ib]), ([], []))
                    pos[0].append(ia)
                    pos[1].append(ib)
        order = {name: k for k, (_s, name) in enumerate(a.parts)}
        out = []
        for (ca, cb), (pa, pb) in sorted(groups.items(), key=lambda g: (order.get(g[0][0], 0), g[0][1])):
            sa = _raw(fa, get_copied_slices(np.unique(pa), fa.k))
            sb = _raw(fb, get_copied_slices(np.unique(pb), fb.k))
            out.append((ca, _lines(a, sa), cb, _lines(b, sb)))
        return out

    def compare(self, aid: str, students: list[Listing], sources: Sequence[Listing] = (),
                earlier: Sequence[Listing] = (), template: Iterable[str] = ()) -> list[Pair]:
        """The flagged pairs of one assignment, best first: student with student, with an earlier term's
        student, and with a known source."""
        bp = self.boilerplate(template)
        for item in [*students, *earlier]:
            item.fingerprint = self.listing_fingerprint(item, bp)
        for item in sources:  # fingerprinted once, shared by every assignment; the template removed here
            item.fingerprint = item.fingerprint or self.listing_fingerprint(item)
            item.common_free = self._without(item.fingerprint, set(bp.tolist()))
        drop = self.common([*students, *earlier])
        for item in [*students, *earlier]:
            item.common_free = self._without(item.fingerprint, drop) if drop else item.fingerprint
        found = []
        for i, j in self.shared([s.common_free.hashes for s in students]):
            found.append(self.pair(aid, students[i], students[i].common_free, students[j], students[j].common_free))
        for i, j in self.shared([s.common_free.hashes for s in students], [e.common_free.hashes for e in earlier]):
            found.append(self.pair(aid, students[i], students[i].common_free, earlier[j], earlier[j].common_free))
        # Known sources keep the common passages: a class that copies cnnlib alike is still copying it.
        for i, j in self.shared([s.fingerprint.hashes for s in students], [s.common_free.hashes for s in sources]):
            found.append(self.pair(aid, students[i], students[i].fingerprint, sources[j], sources[j].common_free))
        return sorted((p for p in found if p), key=lambda p: (-p.score, p.a.owner, p.b.owner))


# ---------------------------------------------------------------------------------------
# the report: pairs.csv, index.html, pairs/<n>.html
# ---------------------------------------------------------------------------------------
def csv_rows(pairs: Iterable[Pair]) -> list[dict[str, str]]:
    """One row per flagged pair and pair of cells sharing code."""
    rows = []
    for p in pairs:
        for ca, la, cb, lb in p.links or [("", "", "", "")]:
            rows.append({"student_a": p.a.owner, "student_b": p.b.owner, "assignment": p.assignment,
                         "cell": ca if ca == cb else f"{ca} ~ {cb}", "score": f"{p.score:.3f}",
                         "matched_lines": f"{la} ~ {lb}"})
    return rows


CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
.note{background:#fff4ce;border:1px solid #e0c050;padding:.5em 1em;margin:1em 0}
.sides{display:grid;grid-template-columns:1fr 1fr;gap:1em}
pre{background:#f7f7f7;border:1px solid #ddd;padding:.5em;overflow-x:auto;font-size:13px;line-height:1.35}
.ln{color:#999;user-select:none;display:inline-block;width:3em}
mark{background:#ffd27a}.part{color:#05508a;font-weight:bold}"""
NOTE = ("Instructor only: this report shows the instructor's solution and the students' code. Do not share it. "
        "A high score points to a pair worth a look; it is not a grade and not a verdict.")


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f'<p class="note">{NOTE}</p>\n{body}\n</body></html>\n')


def render_listing(listing: Listing, slices: np.ndarray, only_matched: bool = False) -> str:
    """The listing as HTML, a header per part, line numbers, the matched character ranges in <mark>.
    only_matched: show only the parts holding a match (for a long known source such as cnnlib)."""
    marked = np.zeros(len(listing.code) + 1, dtype=bool)
    for start, end in zip(*slices):
        marked[int(start):int(end)] = True
    bounds = [s for s, _ in listing.parts[1:]] + [len(listing.code)]
    out = []
    for (start, name), end in zip(listing.parts, bounds):
        if only_matched and not marked[start:end].any():
            continue
        out.append(f'<span class="part"># {html.escape(name)}</span>\n')
        pos = start
        for n, line in enumerate(listing.code[start:end].rstrip("\n").split("\n"), 1):
            text, k = [], 0
            while k < len(line):  # runs of marked or unmarked characters
                j = k
                while j < len(line) and marked[pos + j] == marked[pos + k]:
                    j += 1
                chunk = html.escape(line[k:j])
                text.append(f"<mark>{chunk}</mark>" if marked[pos + k] else chunk)
                k = j
            out.append(f'<span class="ln">{n}</span>{"".join(text)}\n')
            pos += len(line) + 1
    return "<pre>" + "".join(out) + "</pre>"


def _pair_page(p: Pair) -> str:
    rows = "".join(f"<tr><td>{html.escape(ca)}</td><td>{html.escape(la)}</td><td>{html.escape(cb)}</td>"
                   f"<td>{html.escape(lb)}</td></tr>" for ca, la, cb, lb in p.links)
    body = (f"<p>Score {p.score:.2f}: {p.shares[0]:.0%} of {html.escape(p.a.owner)}'s fingerprinted code and "
            f"{p.shares[1]:.0%} of {html.escape(p.b.owner)}'s match; {p.matched} normalised characters matched. "
            f'<a href="../index.html">All pairs</a></p>'
            f"<table><tr><th>cell ({html.escape(p.a.owner)})</th><th>lines</th><th>cell ({html.escape(p.b.owner)})"
            f"</th><th>lines</th></tr>{rows}</table>"
            f'<div class="sides"><div><h2>{html.escape(p.a.owner)}</h2>{render_listing(p.a, p.slices[0])}</div>'
            f'<div><h2>{html.escape(p.b.owner)}</h2>'
            f'{render_listing(p.b, p.slices[1], only_matched=p.b.kind == "source")}</div></div>')
    return _page(f"{p.assignment}: {p.a.owner} and {p.b.owner}", body)


def write_html(out: Path, pairs: Sequence[Pair], settings: SimilarityCheck, totals: dict[str, int]) -> Path:
    """index.html (every flagged pair, ranked) and pairs/<n>.html (the max_pages best of each assignment)."""
    (out / "pairs").mkdir(parents=True, exist_ok=True)
    for old in (out / "pairs").glob("*.html"):
        old.unlink()
    rows, shown = [], {}
    for n, p in enumerate(pairs, 1):
        shown[p.assignment] = shown.get(p.assignment, 0) + 1
        name = html.escape(p.b.owner)
        if shown[p.assignment] <= settings.max_pages:
            (out / "pairs" / f"{n}.html").write_text(_pair_page(p), encoding="utf-8")
            name = f'<a href="pairs/{n}.html">{name}</a>'
        rows.append(f"<tr><td>{n}</td><td>{html.escape(p.assignment)}</td><td>{html.escape(p.a.owner)}</td>"
                    f"<td>{name}</td><td>{p.score:.2f}</td><td>{p.shares[0]:.0%}</td><td>{p.shares[1]:.0%}</td>"
                    f"<td>{p.matched}</td><td>{html.escape(', '.join(sorted({c for c, *_ in p.links})))}</td></tr>")
    counted = ", ".join(f"{aid}: {k} submission(s)" for aid, k in totals.items())
    body = (f"<p>{counted}. Flagged from a score of {settings.threshold:.2f} with at least {settings.min_match} "
            f"normalised characters matched (about {settings.min_match // 25} lines); the template, locked cells "
            f"and passages common to more than {settings.common_share:.0%} of the class never count.</p>"
            "<table><tr><th>#</th><th>assignment</th><th>student A</th><th>student B or source</th><th>score</th>"
            f"<th>of A</th><th>of B</th><th>matched</th><th>cells of A</th></tr>{''.join(rows)}</table>"
            + ("" if rows else "<p>No pair reaches the threshold.</p>"))
    (out / "index.html").write_text(_page("Similarity report", body), encoding="utf-8")
    return out / "index.html"


# ---------------------------------------------------------------------------------------
# the command, and its section of reports/report.md
# ---------------------------------------------------------------------------------------
@dataclass
class SimilarityResult:
    out: Path  # reports/similarity/
    pairs: list[Pair]
    students: dict[str, int]  # assignment -> submissions compared
    seconds: dict[str, float]  # assignment -> seconds (reading, fingerprints, pairs)


def write_similarity(root: str | Path | None = None, assignments: Sequence[str] | None = None,
                     earlier: str | Path | None = None, course: Course | None = None, config=None,
                     release: str | Path | None = None) -> SimilarityResult:
    """Compare the submissions under root/submitted/ (default root: the course directory) per assignment, and
    write root/reports/similarity/ (pairs.csv, index.html, pairs/) and the Similarity section of report.md.

    earlier: a folder of earlier terms' submissions, <earlier>/<student>/<id>/*.ipynb. release: where the
    released notebooks are (default the course's exercises/). config: a traitlets Config for SimilarityCheck,
    over the course's nbgrader_config.py."""
    from cnngrader.pipeline.config import course_config  # config imports nbgrader: only when the report is written

    course = course or load_course()
    cfg = course_config(root, course)
    base = Path(cfg.CourseDirectory.root)
    submitted = base / cfg.CourseDirectory.get("submitted_directory", "submitted")
    release = Path(release) if release else course.root / "exercises"
    if earlier is not None and not Path(earlier).is_dir():
        raise FileNotFoundError(f"earlier submissions: {earlier} is not a folder (expected <student>/<id>/*.ipynb)")
    ids = [course.get(aid).id for aid in assignments] if assignments else list(course.ids)
    if config is not None:
        cfg.merge(config)  # nbgrader_config.py's SimilarityCheck settings, then the caller's
    settings = SimilarityCheck(config=cfg)
    known = course_sources(course)
    pairs, counts, seconds = [], {}, {}
    for aid in ids:
        t0 = time.perf_counter()
        students = submissions(submitted, aid)
        counts[aid] = len(students)
        if students:
            old = submissions(Path(earlier), aid, EARLIER, f"{EARLIER}:") if earlier is not None else []
            pairs += settings.compare(aid, students, [*known, instructor_listing(course, aid)], old,
                                      template_cells(release, aid))
        seconds[aid] = time.perf_counter() - t0
        log.info("similarity %s: %d submission(s), %.1f s", aid, len(students), seconds[aid])
    out = base / "reports" / OUT_DIR
    out.mkdir(parents=True, exist_ok=True)
    with open(out / PAIRS_CSV, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(csv_rows(pairs))
    write_html(out, pairs, settings, counts)
    update_report_md(out.parent)
    return SimilarityResult(out, pairs, counts, seconds)


SECTION = "## Similarity"


def similarity_md(reports: Path, limit: int = 50) -> list[str]:
    """report.md's Similarity section: a link to similarity/index.html and the flagged pairs of pairs.csv."""
    path = Path(reports) / OUT_DIR / PAIRS_CSV
    md = [SECTION, ""]
    if not path.is_file():
        return md + ["Not computed: `make similarity` compares the submissions (instructor only).", ""]
    with open(path, newline="", encoding="utf-8") as fh:
        found = {(r["assignment"], r["student_a"], r["student_b"]): r["score"] for r in csv.DictReader(fh)}
    md += [f"Pairs worth a look, not a grade: [{OUT_DIR}/index.html]({OUT_DIR}/index.html) shows them side by "
           f"side, [{OUT_DIR}/{PAIRS_CSV}]({OUT_DIR}/{PAIRS_CSV}) lists their cells (instructor only).", ""]
    if not found:
        return md + ["No pair reaches the threshold.", ""]
    ranked = sorted(found.items(), key=lambda kv: (-float(kv[1]), kv[0]))
    md += ["| assignment | student A | student B or source | score |", "|---|---|---|---|"]
    md += [f"| {aid} | {a} | {b} | {score} |" for (aid, a, b), score in ranked[:limit]]
    if len(ranked) > limit:
        md.append(f"\n... and {len(ranked) - limit} more in {OUT_DIR}/{PAIRS_CSV}.")
    return md + [""]


def update_report_md(reports: Path) -> None:
    """Rewrite the Similarity section of reports/report.md (the last one) when the report exists."""
    path = Path(reports) / "report.md"
    if not path.is_file():
        return
    text = path.read_text(encoding="utf-8")
    head = text.split("\n" + SECTION + "\n")[0].rstrip("\n")
    path.write_text(head + "\n\n" + "\n".join(similarity_md(reports)), encoding="utf-8")
