"""The command line: worked examples run, bad input gives one line and exit status 2."""

import json
import subprocess
import sys

import pytest

from surrogate.cli import main


def _run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_systems_lists_every_simulator_with_ranges(capsys):
    status, out, _ = _run(capsys, "systems")
    assert status == 0
    for name in ("diffusion", "gaussian_random_field", "navier_stokes2d"):
        assert name in out
    assert "nu" in out and "[0.0001, 0.01]" in out
    status, out, _ = _run(capsys, "systems", "--json")
    assert {s["name"] for s in json.loads(out)} >= {"diffusion", "navier_stokes2d"}


def test_simulate_split_layout_choices_are_the_store_s(tmp_path, capsys):
    from simulators.store import SPLIT_LAYOUTS, FieldStore
    from surrogate.cli import build_parser
    commands = next(a for a in build_parser()._actions if a.dest == "command")
    action = next(a for a in commands.choices["simulate"]._actions
                  if a.dest == "split_layout")
    assert tuple(action.choices) == SPLIT_LAYOUTS
    path = tmp_path / "s.h5"
    status, out, _ = _run(capsys, "simulate", "gaussian_random_field", "-o", str(path), "-n",
                          "20", "--resolution", "16", "--sweep", "spectral_index=1.5:3.5",
                          "-q")
    assert status == 0
    with FieldStore(path) as store:
        assert store.split_layout == "stratified"              # the default
    status, out, _ = _run(capsys, "info", str(path))
    assert "valid 2, test 2; stratified" in out


def test_simulate_info_check_flow(tmp_path, capsys):
    path = tmp_path / "d.h5"
    status, out, _ = _run(capsys, "simulate", "diffusion", "-o", str(path), "-n", "4",
                          "--resolution", "16", "--snapshots", "3",
                          "--sweep", "diffusivity=1e-3:1e-1", "--seed", "1", "-q")
    assert status == 0 and path.exists()
    status, out, _ = _run(capsys, "info", str(path))
    assert status == 0 and "diffusion" in out and "(4, 3, 16, 16)" in out
    status, out, _ = _run(capsys, "info", str(path), "--json")
    assert json.loads(out)["parameters"]["diffusivity"]["declared_range"] == [1e-3, 1e-1]
    status, out, _ = _run(capsys, "check", str(path))
    assert status == 0 and "OK" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["simulate", "nope", "-o", "{tmp}/a.h5"], "unknown system 'nope'"),
    (["simulate", "diffusion", "-o", "{tmp}/a.h5", "--set", "nu=1"], "no parameter 'nu'"),
    (["simulate", "diffusion", "-o", "{tmp}/a.h5", "--set", "diffusivity=9"], "declared range"),
    (["simulate", "diffusion", "-o", "{tmp}/a.h5", "--set", "diffusivity=abc"], "not a number"),
    (["simulate", "diffusion", "-o", "{tmp}/a.h5", "--sweep", "diffusivity=1"], "low:high"),
    (["simulate", "diffusion", "-o", "{tmp}/a.h5", "--resolution", "48"], "power of two"),
    (["simulate", "diffusion", "-o", "{tmp}/a.h5", "--resolution", "4"], "power of two"),
    (["simulate", "diffusion", "-o", "{tmp}/a.h5", "--snapshots", "0"], "positive integer"),
    (["simulate", "diffusion", "-o", "{tmp}/missing/a.h5"], "does not exist"),
    (["info", "{tmp}/missing.h5"], "no such file"),
    (["check", "{tmp}/garbage.h5"], "not a readable HDF5 file"),
    (["info", "{tmp}/garbage.h5"], "not a readable HDF5 file"),
])
def test_bad_input_is_one_line_and_exit_status_2(tmp_path, capsys, argv, message):
    (tmp_path / "garbage.h5").write_bytes(b"\x89HDF\r\n" + b"\0" * 100)
    status, _, err = _run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert status == 2
    assert message in err and err.startswith("surrogate: error:")
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a.h5").exists()


def test_existing_output_is_kept_without_overwrite(tmp_path, capsys):
    path = tmp_path / "keep.h5"
    path.write_bytes(b"precious")
    status, _, err = _run(capsys, "simulate", "diffusion", "-o", str(path), "-n", "2",
                          "--resolution", "16", "-q")
    assert status == 2 and "already exists" in err
    assert path.read_bytes() == b"precious"


def test_console_script_runs_as_a_module_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "surrogate", "info", str(tmp_path / "x.h5")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "no such file" in result.stderr
    help_text = subprocess.run([sys.executable, "-m", "surrogate", "simulate", "--help"],
                               capture_output=True, text=True, check=True).stdout
    assert "examples:" in help_text and "--sweep nu=1e-4:1e-2" in help_text
