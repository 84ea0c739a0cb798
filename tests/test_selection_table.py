"""Raven Pro selection tables: round trips, Raven's files, errors, finding a recording's table."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from utils.data.selection_table import (
    SCORE_COLUMN,
    SELECTION_COLUMNS,
    TABLE_SUFFIX,
    Selection,
    read_selection_table,
    selections_for_recording,
    table_for_recording,
    write_selection_table,
)

HEADER = "\t".join(SELECTION_COLUMNS)


def assert_same(got: list[Selection], want: list[Selection]) -> None:
    """Equal to the written precision: times 1e-6 s, frequencies 1e-3 Hz, scores 1e-4."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.begin_s == pytest.approx(w.begin_s, abs=1e-6)
        assert g.end_s == pytest.approx(w.end_s, abs=1e-6)
        assert g.low_hz == pytest.approx(w.low_hz, abs=1e-3)
        assert g.high_hz == pytest.approx(w.high_hz, abs=1e-3)
        assert g.channel == w.channel
        assert g.begin_file == w.begin_file
        if w.score is None:
            assert g.score is None
        else:
            assert g.score == pytest.approx(w.score, abs=1e-4)


@pytest.mark.parametrize(
    "selections",
    [
        [],
        [Selection(0.5, 1.25, 1000.0, 8000.0)],
        [
            Selection(0.1234567, 2.0, 312.5004, 9000.25, channel=1, score=0.91234),
            Selection(1.0, 1.5, 0.0, 22050.0, channel=2, score=-1.5),
            Selection(3.0, 4.0, 100.0, 200.0, channel=3),  # no score beside scored ones
        ],
        [
            Selection(0.0, 0.25, 50.0, 60.0, begin_file="XC1.wav"),
            Selection(0.5, 0.75, 50.0, 60.0, channel=2, begin_file="XC 2 é.flac"),
            Selection(1.0, 1.25, 50.0, 60.0),
        ],
    ],
    ids=["empty", "one", "multichannel-scores", "begin-file"],
)
def test_round_trip(tmp_path: Path, selections: list[Selection]) -> None:
    path = tmp_path / f"rec{TABLE_SUFFIX}"
    write_selection_table(path, selections)
    assert_same(read_selection_table(path), selections)


def test_written_layout(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    write_selection_table(
        path, [Selection(1, 2, 3, 4, score=0.5), Selection(5, 6, 7, 8, channel=2)]
    )
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t") == [*SELECTION_COLUMNS, SCORE_COLUMN]
    assert lines[1] == "1\tSpectrogram 1\t1\t1.000000\t2.000000\t3.000\t4.000\t0.5000"
    assert lines[2] == "2\tSpectrogram 1\t2\t5.000000\t6.000000\t7.000\t8.000\t"
    assert len(lines) == 3


def test_without_scores_no_score_column(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    write_selection_table(path, [Selection(0.0, 1.0, 10.0, 20.0)])
    assert path.read_text().splitlines()[0] == HEADER
    assert read_selection_table(path)[0].score is None


def test_empty_table_is_header_only(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    write_selection_table(path, [])
    assert path.read_text() == HEADER + "\n"
    assert read_selection_table(path) == []


@pytest.mark.parametrize(
    "bad",
    [
        Selection(-1.0, 1.0, 0.0, 10.0),
        Selection(1.0, 1.0, 0.0, 10.0),
        Selection(0.0, 1.0, 10.0, 10.0),
        Selection(0.0, 1.0, 0.0, math.inf),
        Selection(0.0, 1.0, 0.0, 10.0, channel=0),
        Selection(0.0, 1.0, 0.0, 10.0, score=math.nan),
        Selection(0.0, 1.0, 0.0, 10.0, begin_file="a\tb.wav"),
    ],
)
def test_write_rejects_what_would_not_read_back(tmp_path: Path, bad: Selection) -> None:
    path = tmp_path / "out.selections.txt"
    with pytest.raises(ValueError, match="out.selections.txt") as info:
        write_selection_table(path, [Selection(0.0, 1.0, 0.0, 10.0), bad])
    assert "selection 2" in str(info.value)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


RAVEN_TABLE = (
    "\ufeff"
    "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)"
    "\tDelta Time (s)\tAnnotation\r\n"
    "1\tWaveform 1\t1\t0.500000\t1.250000\t0.000\t11025.000\t0.750\tsong\r\n"
    "1\tSpectrogram 1\t1\t0.500000\t1.250000\t1500.000\t6000.000\t0.750\tsong\r\n"
    "2\tSpectrogram 1\t2\t3.000000\t3.500000\t2000.000\t4000.000\t0.500\t\r\n"
    "2\tWaveform 1\t2\t3.000000\t3.500000\t0.000\t11025.000\t0.500\t\r\n"
    "3\tWaveform 1\t1\t4.000000\t4.100000\t100.000\t200.000\t0.100\tcall\r\n"
    "\r\n"
)


def test_reads_raven_table(tmp_path: Path) -> None:
    path = tmp_path / "XC1.Table.1.selections.txt"
    path.write_bytes(RAVEN_TABLE.encode("utf-8"))
    assert read_selection_table(path) == [
        Selection(0.5, 1.25, 1500.0, 6000.0, channel=1),  # the Spectrogram row, not the Waveform
        Selection(3.0, 3.5, 2000.0, 4000.0, channel=2),
        Selection(4.0, 4.1, 100.0, 200.0, channel=1),  # only a Waveform row
    ]


def test_reads_columns_in_any_order(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text(
        " High Freq (Hz)\tNotes\tEnd Time (s)\tScore\tBegin File\tBegin Time (s) \tLow Freq (Hz)\n"
        "9000\tx\t2.5\t0.75\tXC9.wav\t1.5\t300\n"
    )
    assert read_selection_table(path) == [
        Selection(1.5, 2.5, 300.0, 9000.0, channel=1, score=0.75, begin_file="XC9.wav")
    ]


def test_missing_band_is_whole_band(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("Begin Time (s)\tEnd Time (s)\n0.25\t0.5\n1\t2\n")
    got = read_selection_table(path)
    assert [(s.low_hz, s.high_hz, s.channel) for s in got] == [(0.0, math.inf, 1)] * 2
    assert [(s.begin_s, s.end_s) for s in got] == [(0.25, 0.5), (1.0, 2.0)]


def test_reads_latin1_annotations(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    text = f"{HEADER}\tAnnotation\n1\tSpectrogram 1\t1\t0\t1\t0\t10\tchant é\n"
    path.write_bytes(text.encode("latin-1"))
    assert read_selection_table(path) == [Selection(0.0, 1.0, 0.0, 10.0)]


ROW = "1\tSpectrogram 1\t1\t0.5\t1.0\t100\t200"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read"),
        ("", "empty"),
        ("Selection\tView\tEnd Time (s)\n1\tSpectrogram 1\t2\n", "Begin Time (s)"),
        ("Selection\tBegin Time (s)\n1\t2\n", "End Time (s)"),
        (f"{HEADER}\n1\tSpectrogram 1\t1\tabc\t1.0\t100\t200\n", "line 2"),
        (f"{HEADER}\n{ROW}\n\n1\tSpectrogram 1\t1\t0.5\t1.0\t1e3\tx\n", "line 4"),
        (f"{HEADER}\n1\tSpectrogram 1\t1\t-0.5\t1.0\t100\t200\n", "line 2"),
        (f"{HEADER}\n1\tSpectrogram 1\t1\t0.5\tnan\t100\t200\n", "line 2"),
        (f"{HEADER}\n1\tSpectrogram 1\t1\t0.5\tinf\t100\t200\n", "line 2"),
        (f"{HEADER}\n1\tSpectrogram 1\t1\t0.5\t1.0\t100\tinf\n", "line 2"),
        (f"{HEADER}\n1\tSpectrogram 1\t1\t0.5\t1.0\t-1\t200\n", "line 2"),
        (f"{HEADER}\n1\tSpectrogram 1\t1\t1.0\t1.0\t100\t200\n", "line 2"),
        (f"{HEADER}\n1\tSpectrogram 1\t1\t2.0\t1.0\t100\t200\n", "line 2"),
        (f"{HEADER}\n1\tSpectrogram 1\t1\t0.5\t1.0\t200\t200\n", "line 2"),
        (f"{HEADER}\n1\tSpectrogram 1\t0\t0.5\t1.0\t100\t200\n", "line 2"),
        (f"{HEADER}\n1\tSpectrogram 1\t1.5\t0.5\t1.0\t100\t200\n", "line 2"),
        (f"{HEADER}\nx\tSpectrogram 1\t1\t0.5\t1.0\t100\t200\n", "line 2"),
        (f"{HEADER}\n{ROW}\n2\tSpectrogram 1\t1\t0.5\t1.0\n", "line 3"),
        (f"{HEADER}\t{SCORE_COLUMN}\n{ROW}\tinf\n", "line 2"),
    ],
    ids=[
        "missing-file",
        "empty-file",
        "no-begin",
        "no-end",
        "begin-not-number",
        "high-not-number",
        "negative-begin",
        "nan-end",
        "inf-end",
        "inf-high",
        "negative-low",
        "begin-equals-end",
        "begin-after-end",
        "low-equals-high",
        "channel-0",
        "channel-not-integer",
        "selection-not-integer",
        "short-row",
        "inf-score",
    ],
)
def test_bad_table_raises_one_line_naming_file(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "bad_table.selections.txt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError) as info:
        read_selection_table(path)
    message = str(info.value)
    assert "bad_table.selections.txt" in message
    assert expected in message
    assert "\n" not in message and "\r" not in message


def test_folder_is_not_a_table(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        read_selection_table(tmp_path)


def touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).write_text(HEADER + "\n")


@pytest.mark.parametrize(
    ("present", "expected"),
    [
        (
            ["rec.selections.txt", "rec.Table.1.selections.txt", "rec.txt"],
            "rec.selections.txt",
        ),
        (["rec.Table.1.selections.txt", "rec.txt"], "rec.Table.1.selections.txt"),
        (["rec.txt", "rec.Table.2.selections.txt"], "rec.txt"),
        (
            [
                "rec.Table.10.selections.txt",
                "rec.Table.2.selections.txt",
                "rec.Table.x.selections.txt",
            ],
            "rec.Table.2.selections.txt",
        ),
        (
            ["rec.Table.x.selections.txt", "rec.Table.b.selections.txt"],
            "rec.Table.b.selections.txt",
        ),
        (["other.selections.txt", "record.txt", "rec.wav.txt", "rec.Table.selections.txt"], None),
        ([], None),
    ],
)
def test_table_for_recording_in_folder(
    tmp_path: Path, present: list[str], expected: str | None
) -> None:
    touch(tmp_path, *present)
    found = table_for_recording(tmp_path, Path("/somewhere/else/rec.wav"))
    assert found == (None if expected is None else tmp_path / expected)


def test_table_for_recording_file_is_returned_as_is(tmp_path: Path) -> None:
    table = tmp_path / "any name.txt"
    touch(tmp_path, table.name, "rec.selections.txt")
    assert table_for_recording(table, "rec.wav") == table
    assert table_for_recording(str(table), "rec.wav") == table


def test_table_for_recording_ignores_folders_named_like_tables(tmp_path: Path) -> None:
    (tmp_path / "rec.selections.txt").mkdir()
    touch(tmp_path, "rec.txt")
    assert table_for_recording(tmp_path, "rec.flac") == tmp_path / "rec.txt"


def test_selections_for_recording_filters_by_begin_file(tmp_path: Path) -> None:
    table = tmp_path / "batch.selections.txt"
    mine = [
        Selection(0.0, 1.0, 10.0, 20.0, begin_file="XC1.wav"),
        Selection(2.0, 3.0, 10.0, 20.0, begin_file="XC1"),  # a stem: matched by stem
        Selection(4.0, 5.0, 10.0, 20.0, begin_file="C:\\audio\\XC1.wav"),
        Selection(6.0, 7.0, 10.0, 20.0),  # no Begin File: kept
    ]
    others = [
        Selection(1.0, 2.0, 10.0, 20.0, begin_file="XC2.wav"),
        Selection(1.0, 2.0, 10.0, 20.0, begin_file="XC1.flac"),  # another file of that stem
        Selection(1.0, 2.0, 10.0, 20.0, begin_file="xc1.wav"),  # case-sensitive
        Selection(1.0, 2.0, 10.0, 20.0, begin_file="XC10"),
    ]
    write_selection_table(table, [*others[:2], *mine[:2], *others[2:], *mine[2:]])
    assert selections_for_recording(table, tmp_path / "XC1.wav") == mine
    assert selections_for_recording(table, "XC2.wav") == [others[0], mine[3]]
    assert selections_for_recording(table, "XC3.wav") == mine[3:]


def test_selections_for_recording_without_begin_file_keeps_all(tmp_path: Path) -> None:
    selections = [Selection(0.0, 1.0, 10.0, 20.0), Selection(1.0, 2.0, 30.0, 40.0, channel=2)]
    write_selection_table(tmp_path / "XC5.Table.1.selections.txt", selections)
    assert selections_for_recording(tmp_path, "XC5.wav") == selections
    assert selections_for_recording(tmp_path, "XC6.wav") == []


def test_selections_for_recording_missing_table_file_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nowhere.txt"):
        selections_for_recording(tmp_path / "nowhere.txt", "XC1.wav")


def test_a_table_over_several_files_gives_times_within_each_file(tmp_path):
    table = tmp_path / "two_files.txt"
    table.write_text(
        "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\t"
        "High Freq (Hz)\tBegin File\tFile Offset (s)\n"
        "1\tSpectrogram 1\t1\t2.0\t3.5\t1000\t4000\ta.wav\t2.0\n"
        "2\tSpectrogram 1\t1\t62.0\t62.5\t1500\t3000\tb.wav\t2.0\n"
    )
    (first,) = selections_for_recording(table, tmp_path / "a.wav")
    (second,) = selections_for_recording(table, tmp_path / "b.wav")
    assert (first.begin_s, first.end_s) == (2.0, 3.5)
    assert (second.begin_s, second.end_s) == (2.0, 2.5)  # 62 s into the set, 2 s into b.wav
