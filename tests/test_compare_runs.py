"""bench.compare_runs: paired differences between two evaluation runs, by group."""

from __future__ import annotations

import csv

import pytest

from bench.compare_runs import main

BUDSAM = "BudSAM (full box, rendered gated)"


def _write_csv(path, columns, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)


def _write_run(folder, scores):
    rows = [
        {"method": BUDSAM, "name": n, "si_sdr_imp": s, "birdnet": b} for n, (s, b) in scores.items()
    ]
    rows += [{"method": "noisereduce (stationary)", "name": n, "si_sdr_imp": 0.0} for n in scores]
    _write_csv(folder / "per_view.csv", ("method", "name", "si_sdr_imp", "birdnet"), rows)
    return folder


@pytest.fixture
def mixtures(tmp_path):
    rows = [
        {"name": "m1", "snr_db": "0.0", "noise_kind": "rain", "bird_kind": "owl"},
        {"name": "m2", "snr_db": "0.0", "noise_kind": "insects: cicadas", "bird_kind": "wren"},
        {"name": "m3", "snr_db": "-5.0", "noise_kind": "rain", "bird_kind": "wren"},
    ]
    path = tmp_path / "mix" / "mixtures.csv"
    _write_csv(path, ("name", "snr_db", "noise_kind", "bird_kind"), rows)
    return path


def test_paired_differences_per_group(tmp_path, mixtures, capsys):
    run_a = _write_run(tmp_path / "a", {"m1": (10.0, 0.5), "m2": (12.0, 0.7), "m3": (8.0, 0.6)})
    run_b = _write_run(tmp_path / "b", {"m1": (11.0, 0.6), "m2": (15.0, 0.7), "m3": (9.0, 0.2)})
    assert main([str(run_a), str(run_b), "--mixtures", str(mixtures)]) == 0
    lines = capsys.readouterr().out.splitlines()
    # all: differences 1, 3, 1 dB -> mean 5/3, standard error sqrt(4/3)/sqrt(3) = 0.67
    assert "| all | 3 | 10.00 | 11.67 | +1.67 +- 0.67 | 0.600 | 0.500 | -0.100 +- 0.153 |" in lines
    # rain: m1 and m3, differences 1 and 1 dB; +0.1 and -0.4 of BirdNET
    assert "| rain | 2 | 9.00 | 10.00 | +1.00 +- 0.00 | 0.550 | 0.400 | -0.150 +- 0.250 |" in lines
    for kind in ("insects: cicadas", "insects"):  # the noise kind and its family
        assert any(
            line.startswith(f"| {kind} | 1 | 12.00 | 15.00 | +3.00 +- nan |") for line in lines
        )
    assert any(line.startswith("| -5.0 | 1 |") for line in lines)
    assert any(line.startswith("| owl | 1 |") for line in lines)


def test_mixtures_scored_by_one_run_only_are_left_out_with_a_warning(tmp_path, mixtures, capsys):
    run_a = _write_run(tmp_path / "a", {"m1": (10.0, 0.5), "m2": (12.0, 0.7)})
    run_b = _write_run(tmp_path / "b", {"m1": (11.0, 0.6), "m2": (13.0, 0.7), "m3": (9.0, 0.2)})
    assert main([str(run_a), str(run_b / "per_view.csv"), "--mixtures", str(mixtures), "--by"]) == 0
    out = capsys.readouterr().out
    assert "warning: 1 mixtures scored by one run only" in out
    assert "| all | 2 | 11.00 | 12.00 | +1.00 +- 0.00 |" in out


def test_unusable_inputs_give_one_line_errors(tmp_path, mixtures, capsys):
    run_a = _write_run(tmp_path / "a", {"m1": (10.0, 0.5)})
    missing = tmp_path / "nowhere"
    assert main([str(run_a), str(missing), "--mixtures", str(mixtures)]) == 2
    assert f"{missing}: no such file" in capsys.readouterr().err
    assert main([str(run_a), str(run_a), "--mixtures", str(mixtures), "--method_b", "energy"]) == 2
    assert "0 methods contain 'energy'" in capsys.readouterr().err
    other = _write_run(tmp_path / "other", {"x9": (1.0, 0.1)})
    assert main([str(run_a), str(other), "--mixtures", str(mixtures)]) == 2
    assert "no mixture of" in capsys.readouterr().err
    _write_csv(tmp_path / "bad" / "per_view.csv", ("method", "name", "si_sdr_imp"),
               [{"method": BUDSAM, "name": "m1", "si_sdr_imp": "loud"}])  # fmt: skip
    assert main([str(run_a), str(tmp_path / "bad"), "--mixtures", str(mixtures)]) == 2
    assert "per_view.csv: a score is not a number" in capsys.readouterr().err
    _write_csv(tmp_path / "nameless" / "per_view.csv", ("method", "si_sdr_imp"), [])
    assert main([str(run_a), str(tmp_path / "nameless"), "--mixtures", str(mixtures)]) == 2
    assert "per_view.csv: no column name" in capsys.readouterr().err
    assert main([str(run_a), str(run_a), "--mixtures", str(run_a / "per_view.csv")]) == 2
    assert "per_view.csv: no column bird_kind, noise_kind, snr_db" in capsys.readouterr().err


def test_out_writes_the_table_and_a_plot_of_the_differences(tmp_path, mixtures, capsys):
    run_a = _write_run(tmp_path / "a", {"m1": (10.0, 0.5), "m2": (12.0, 0.7), "m3": (8.0, 0.6)})
    run_b = _write_run(tmp_path / "b", {"m1": (11.0, 0.6), "m2": (15.0, 0.7), "m3": (9.0, 0.2)})
    out = tmp_path / "paired"
    assert main([str(run_a), str(run_b), "--mixtures", str(mixtures), "--out", str(out)]) == 0
    with open(out / "paired.csv", newline="") as handle:
        rows = {(row["grouping"], row["group"]): row for row in csv.DictReader(handle)}
    assert float(rows[("all", "all")]["si_sdr_imp_diff"]) == pytest.approx(5 / 3)
    assert float(rows[("noise_kind", "rain")]["birdnet_diff"]) == pytest.approx(-0.15)
    assert rows[("noise_kind", "insects: cicadas")]["si_sdr_imp_error"] == ""  # one mixture
    assert len(rows) == 1 + 2 + 2 + 2 + 2  # all, SNRs, noise families, noise kinds, birds
    assert (out / "paired.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "paired.png" in capsys.readouterr().out


def test_of_several_labels_containing_the_text_the_one_ending_with_it_is_taken(
    tmp_path, mixtures, capsys
):
    """A rendering's spec is often part of another's (``smooth=50:20`` of
    ``smooth=50:20,chorus=0.5``): the label that ends with it is the one meant."""
    rows = [
        {"method": f"BudSAM, rendered gated,{spec}", "name": name, "si_sdr_imp": score}
        for spec, score in (("smooth=50:20", 10.0), ("smooth=50:20,chorus=0.5", 12.0))
        for name in ("m1", "m2", "m3")
    ]
    _write_csv(tmp_path / "run" / "per_view.csv", ("method", "name", "si_sdr_imp"), rows)
    run = str(tmp_path / "run")
    args = [run, run, "--mixtures", str(mixtures), "--method_a", "smooth=50:20", "--by"]
    assert main([*args, "--method_b", "chorus=0.5"]) == 0
    assert "| all | 3 | 10.00 | 12.00 | +2.00 +- 0.00 |" in capsys.readouterr().out
    assert main([*args, "--method_b", "rendered gated"]) == 2  # neither label ends with it
    assert "2 methods contain 'rendered gated'" in capsys.readouterr().err
