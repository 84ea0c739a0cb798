"""Raven Pro selection tables: the tab-separated ``.txt`` files that Raven Pro writes and
that Audacity importers and most bioacoustics tools read.

A table has a header line and one row per view per selection: Raven writes, for one
selection, a ``Waveform 1`` row and a ``Spectrogram 1`` row with the same ``Selection``
number. The columns used here are ``Selection``, ``View``, ``Channel`` (1-based),
``Begin Time (s)``, ``End Time (s)``, ``Low Freq (Hz)``, ``High Freq (Hz)`` and the
optional ``Begin File`` (the sound file's name) and ``Score``; any other column (``Delta
Time (s)``, ``Annotation`` ...) is ignored on reading. Raven names a table
``<sound file stem>.Table.1.selections.txt``.

A :class:`Selection` is one time-frequency box (seconds, hertz) on one channel. Bad
tables raise ``ValueError`` with one line naming the file, and the line number for row
problems.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

from utils.common.files import atomic_path

SELECTION_COLUMNS = (
    "Selection",
    "View",
    "Channel",
    "Begin Time (s)",
    "End Time (s)",
    "Low Freq (Hz)",
    "High Freq (Hz)",
)
SCORE_COLUMN = "Score"
TABLE_SUFFIX = ".selections.txt"

BEGIN_FILE_COLUMN = "Begin File"
FILE_OFFSET_COLUMN = "File Offset (s)"  # Raven's time within Begin File, in a multi-file table
WRITTEN_VIEW = "Spectrogram 1"

_SELECTION, _VIEW, _CHANNEL, _BEGIN, _END, _LOW, _HIGH = SELECTION_COLUMNS
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Selection:
    """One selection: ``begin_s < end_s`` in seconds from the start of the recording,
    ``low_hz < high_hz`` in hertz (``high_hz`` is ``math.inf`` when the table gives no
    band), ``channel`` 1-based as in Raven, an optional ``score`` (a detector's
    confidence) and the optional ``begin_file`` (the name of the sound file it lies in)."""

    begin_s: float
    end_s: float
    low_hz: float
    high_hz: float
    channel: int = 1
    score: float | None = None
    begin_file: str | None = None


def write_selection_table(path: str | Path, selections: list[Selection]) -> None:
    """Write ``selections`` as a Raven table at ``path``, atomically, UTF-8, ``\\n`` line ends.

    Tab-separated; the header is :data:`SELECTION_COLUMNS`, then ``Begin File`` when any
    selection has a ``begin_file`` and ``Score`` when any has a score (an empty cell
    where one has none). One row per selection, View ``Spectrogram 1``, Selection
    numbered 1..n in the given order; times with 6 decimals, frequencies with 3,
    scores with 4. An empty list writes the header only (a valid empty table).

    Raises ``ValueError`` naming the file and the selection (nothing is written) when a
    selection would not read back: a negative or non-finite time or frequency
    (``high_hz = inf`` included: clip it to the recording's Nyquist frequency first),
    begin >= end, low >= high, channel < 1, a non-finite score, or a ``begin_file``
    holding a tab or a line break.
    """
    path = Path(path)
    with_file = any(s.begin_file is not None for s in selections)
    with_score = any(s.score is not None for s in selections)
    header = list(SELECTION_COLUMNS)
    header += [BEGIN_FILE_COLUMN] if with_file else []
    header += [SCORE_COLUMN] if with_score else []
    lines = ["\t".join(header)]
    for number, sel in enumerate(selections, start=1):
        problem = _selection_problem(sel)
        if problem is not None:
            raise ValueError(f"{path}: cannot write selection {number}: {problem}")
        row = [
            str(number),
            WRITTEN_VIEW,
            str(sel.channel),
            f"{sel.begin_s:.6f}",
            f"{sel.end_s:.6f}",
            f"{sel.low_hz:.3f}",
            f"{sel.high_hz:.3f}",
        ]
        if with_file:
            row.append(sel.begin_file or "")
        if with_score:
            row.append("" if sel.score is None else f"{sel.score:.4f}")
        lines.append("\t".join(row))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")


def read_selection_table(path: str | Path) -> list[Selection]:
    """The selections of the Raven table at ``path``, in file order.

    Rows sharing a Selection number and a channel are one selection (Raven's Waveform
    and Spectrogram rows of it); the Spectrogram row's values are kept, else the
    first row's. Without a ``Selection`` column every row is a selection. Columns are
    found by header name (any order, extra columns ignored, names compared after
    stripping whitespace); a UTF-8 BOM and ``\\r\\n`` or ``\\r`` line ends are
    tolerated, a file that is not UTF-8 is read as Latin-1, blank lines are skipped.
    ``Channel`` missing -> 1; ``Low Freq (Hz)``/``High Freq (Hz)`` missing -> the whole
    band (0 and ``math.inf``); an empty cell in one of these or in ``Begin File`` or
    ``Score`` counts as missing. Where a row has a ``File Offset (s)`` (Raven's time
    within ``Begin File``, in a table over several files), the selection starts there.

    Raises ``ValueError`` with one line naming the file (and the line number for row
    problems) when the file is missing or unreadable, the header lacks ``Begin Time
    (s)`` or ``End Time (s)``, a value is not a number (Selection and Channel: not an
    integer), a time or frequency is negative or not finite, a score is not finite,
    begin >= end, low >= high, channel < 1, or a row has fewer fields than the header.
    """
    path = Path(path)
    lines = _read_lines(path)
    header_at = next((i for i, line in enumerate(lines) if line.strip()), None)
    if header_at is None:
        raise ValueError(f"{path}: empty selection table (no header line)")
    names = [name.strip() for name in lines[header_at].split("\t")]
    columns: dict[str, int] = {}
    for index, name in enumerate(names):
        columns.setdefault(name, index)
    missing = [name for name in (_BEGIN, _END) if name not in columns]
    if missing:
        found = ", ".join(map(repr, names))
        found = found if len(found) <= 120 else found[:117] + "..."
        raise ValueError(
            f"{path}: not a selection table: the header lacks "
            f"{', '.join(map(repr, missing))} (found {found})"
        )

    selections: list[Selection] = []
    kept: dict[tuple[int, int], tuple[int, bool]] = {}  # (number, channel) -> (index, is spec)
    for line_no in range(header_at + 2, len(lines) + 1):
        line = lines[line_no - 1]
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split("\t")]
        if len(fields) < len(names):
            raise ValueError(
                f"{path}: line {line_no}: {len(fields)} fields, the header has {len(names)}"
            )
        try:
            number, is_spectrogram, sel = _parse_row(fields, columns)
        except ValueError as exc:
            raise ValueError(f"{path}: line {line_no}: {exc}") from None
        key = (line_no if number is None else number, sel.channel)
        if key not in kept:
            kept[key] = (len(selections), is_spectrogram)
            selections.append(sel)
        elif is_spectrogram and not kept[key][1]:
            kept[key] = (kept[key][0], True)
            selections[kept[key][0]] = sel
    return selections


def table_for_recording(tables: str | Path, recording: str | Path) -> Path | None:
    """The table that holds ``recording``'s selections.

    ``tables`` is a table file or a folder. Anything but an existing folder is taken as
    the table file and returned as it is (reading a missing one then raises). In a
    folder, the first existing file of ``<stem>.selections.txt``,
    ``<stem>.Table.1.selections.txt``, ``<stem>.txt``, then any
    ``<stem>.Table.*.selections.txt`` (in order of the table number, then by name),
    where ``<stem>`` is the recording's file name without its suffix; None when none
    exists.
    """
    tables = Path(tables)
    if not tables.is_dir():
        return tables
    stem = Path(recording).stem
    for name in (f"{stem}{TABLE_SUFFIX}", f"{stem}.Table.1{TABLE_SUFFIX}", f"{stem}.txt"):
        candidate = tables / name
        if candidate.is_file():
            return candidate
    prefix = f"{stem}.Table."
    others = [
        p
        for p in tables.iterdir()
        if p.name.startswith(prefix)
        and p.name.endswith(TABLE_SUFFIX)
        and len(p.name) > len(prefix) + len(TABLE_SUFFIX)
        and p.is_file()
    ]
    if not others:
        return None
    return min(others, key=lambda p: _table_number_key(p.name[len(prefix) : -len(TABLE_SUFFIX)]))


def selections_for_recording(tables: str | Path, recording: str | Path) -> list[Selection]:
    """The selections that prompt ``recording``: those of :func:`table_for_recording`
    (``[]`` when it finds none), in file order.

    When the table has ``Begin File`` values, a selection is kept when its Begin File
    names the recording: its last path component equals the recording's file name
    (case-sensitive), or its stem when the value has no suffix. Selections with an
    empty Begin File cell are kept (the table was already matched to the recording by
    name). Raises ``ValueError`` as :func:`read_selection_table` does.
    """
    table = table_for_recording(tables, recording)
    if table is None:
        return []
    recording = Path(recording)
    return [
        s
        for s in read_selection_table(table)
        if s.begin_file is None or _names_recording(s.begin_file, recording)
    ]


def _read_lines(path: Path) -> list[str]:
    """The lines of ``path`` without their line ends (BOM dropped); ValueError if unreadable."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ValueError(f"{path}: cannot read selection table: {reason}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return _LINE_BREAK.split(text)


def _parse_row(fields: list[str], columns: dict[str, int]) -> tuple[int | None, bool, Selection]:
    """One row's (Selection number or None, whether it is a Spectrogram row, Selection);
    ValueError (without the file and line) when a value is bad."""

    def cell(name: str) -> str:
        return fields[columns[name]] if name in columns else ""

    number = _integer(_SELECTION, cell(_SELECTION)) if cell(_SELECTION) else None
    if _SELECTION in columns and number is None:
        raise ValueError(f"empty {_SELECTION!r}")
    channel = _integer(_CHANNEL, cell(_CHANNEL)) if cell(_CHANNEL) else 1
    begin = _number(_BEGIN, cell(_BEGIN))
    end = _number(_END, cell(_END))
    if cell(FILE_OFFSET_COLUMN):  # a table over several files: time within Begin File
        offset = _number(FILE_OFFSET_COLUMN, cell(FILE_OFFSET_COLUMN))
        begin, end = offset, offset + (end - begin)
    low = _number(_LOW, cell(_LOW)) if cell(_LOW) else 0.0
    high = _number(_HIGH, cell(_HIGH)) if cell(_HIGH) else math.inf
    score = _number(SCORE_COLUMN, cell(SCORE_COLUMN)) if cell(SCORE_COLUMN) else None
    sel = Selection(begin, end, low, high, channel, score, cell(BEGIN_FILE_COLUMN) or None)
    # A missing band is the whole band: the only place inf is allowed.
    problem = _selection_problem(sel, allow_inf_high=not cell(_HIGH))
    if problem is not None:
        raise ValueError(problem)
    return number, cell(_VIEW).lower().startswith("spectrogram"), sel


def _selection_problem(sel: Selection, *, allow_inf_high: bool = False) -> str | None:
    """Why ``sel`` is not a valid selection (one line), or None."""
    values = (
        (_BEGIN, sel.begin_s),
        (_END, sel.end_s),
        (_LOW, sel.low_hz),
        (_HIGH, sel.high_hz),
    )
    for name, value in values:
        if name == _HIGH and allow_inf_high and value == math.inf:
            continue
        if not math.isfinite(value) or value < 0:
            return f"{name!r} must be a finite number >= 0, got {value!r}"
    if sel.begin_s >= sel.end_s:
        return f"begin {sel.begin_s!r} s is not before end {sel.end_s!r} s"
    if sel.low_hz >= sel.high_hz:
        return f"low frequency {sel.low_hz!r} Hz is not below high frequency {sel.high_hz!r} Hz"
    if sel.channel < 1:
        return f"{_CHANNEL!r} must be >= 1 (1-based), got {sel.channel!r}"
    if sel.score is not None and not math.isfinite(sel.score):
        return f"{SCORE_COLUMN!r} must be finite, got {sel.score!r}"
    if sel.begin_file is not None and re.search(r"[\t\r\n]", sel.begin_file):
        return f"{BEGIN_FILE_COLUMN!r} holds a tab or a line break: {sel.begin_file!r}"
    return None


def _number(name: str, text: str) -> float:
    """``text`` as a float; ValueError naming the column when it is not a number."""
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name!r} is not a number: {text!r}") from None


def _integer(name: str, text: str) -> int:
    """``text`` as an int (``"2"`` or ``"2.0"``); ValueError naming the column otherwise."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value.is_integer():
        raise ValueError(f"{name!r} is not an integer: {text!r}")
    return int(value)


def _table_number_key(middle: str) -> tuple[int, int, str]:
    """Sort key of a ``<stem>.Table.<middle>.selections.txt`` name: numbered tables first,
    by number (2 before 10), then the others by name."""
    return (0, int(middle), middle) if middle.isdigit() else (1, 0, middle)


def _names_recording(begin_file: str, recording: Path) -> bool:
    """Whether a Begin File value names ``recording`` (by name, or by stem when the
    value has no suffix); Windows and POSIX folders in the value are ignored."""
    name = PureWindowsPath(begin_file).name
    if Path(name).suffix:
        return name == recording.name
    return name == recording.stem
