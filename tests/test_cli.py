"""The `ecnas` command as a user runs it: a real subprocess, the real data through the mirror."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def ecnas(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ecnas_plugin.cli", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def test_query_prints_all_repeats_as_json(shared_data):
    out = ecnas("query", "nasbench101", "--table", "ecnas-4v", "--epochs", "108", "--format", "json",
                "--arch", "0110001100010000:input,conv1x1-bn-relu,conv3x3-bn-relu,output")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["repeat"] for r in rows] == [0, 1, 2]
    assert {r["arch_key"] for r in rows} == {"5529e1779433733d1145e20de5d8604e"}
    assert all(r["source"] == "measured" and r["epochs"] == 108 for r in rows)


def test_query_text_shows_mean(shared_data):
    out = ecnas("query", "nasbench101", "--table", "ecnas-4v", "--epochs", "4",
                "--arch", "5529e1779433733d1145e20de5d8604e")
    assert out.returncode == 0, out.stderr
    assert "train_energy_kwh" in out.stdout and "mean over 3 repeats" in out.stdout


@pytest.mark.parametrize("args, message", [
    (("--table", "ecnas-4v", "--epochs", "50", "--arch", "5529e1779433733d1145e20de5d8604e"),
     "unknown epoch budget 50 for architecture 5529e1779433733d1145e20de5d8604e in table 'ecnas-4v'; "
     "available: 4, 12, 36, 108"),
    (("--table", "ecnas-9v", "--arch", "5529e1779433733d1145e20de5d8604e"),
     "unknown table 'ecnas-9v'; available: ecnas-4v, ecnas-4v-linscale, ecnas-5v, ecnas-7v"),
    (("--table", "ecnas-5v", "--arch", "01:input,output", "--dataset", "cifar100"),
     "invalid architecture"),
    (("--table", "ecnas-5v", "--dataset", "cifar100", "--arch", "e1aeb470572477cf15b1bd3644d59370"),
     "unknown dataset 'cifar100'"),
])
def test_bad_input_names_the_bad_thing(shared_data, args, message):
    out = ecnas("query", "nasbench101", *args)
    assert out.returncode == 2
    assert message in out.stderr


def test_data_list_and_pull_from_the_mirror(shared_data):
    out = ecnas("data", "list")
    assert out.returncode == 0, out.stderr
    line = next(l for l in out.stdout.splitlines() if l.startswith("energy_5V9E_4epochs.tfrecord"))
    assert "MIT" in line and "mirror" in line
    pulled = ecnas("data", "pull", "zc_nasbench101.json", "--quiet")
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.strip() == str(shared_data / "naslib" / "zc_nasbench101.json")
    missing = ecnas("data", "pull", "no_such_file.bin")
    assert missing.returncode == 2 and "unknown data file 'no_such_file.bin'" in missing.stderr


def test_nb201_index_resolves_through_the_registry(shared_data):
    import ecnas_plugin as ep

    space = ep.get_space("nasbench201")
    arch = space.parse_arch("1")
    assert arch == "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    assert space.canonical_key(arch) == arch
    assert space.parse_arch(str(space.canonical_key(arch))) == arch


@pytest.mark.parametrize("args, names", [
    (("frob",), ["argument command: invalid choice: 'frob'"]),
    (("query", "nasbench999", "--table", "ecnas-4v", "--arch", "x"), ["unknown space 'nasbench999'"]),
    (("query", "nasbench101", "--table", "ecnas-4v", "--arch", "x", "--epochs", "four"),
     ["argument --epochs: invalid int value: 'four'"]),
    (("tables", "--rebuild", "ecnas-9v"), ["unknown table 'ecnas-9v'"]),
    (("data", "pull", "no_such_file.bin"), ["unknown data file 'no_such_file.bin'"]),
    (("data", "list", "--mirror", "/no/such/mirror"), ["offline mirror /no/such/mirror is not a folder"]),
    (("study", "run", "configs/studies/quickstart.yaml", "--workers", "0"), ["argument --workers: must be >= 1"]),
    (("study", "run", "/no/such/study.yaml"), ["'/no/such/study.yaml': file not found"]),
    (("study", "report", "/"), ["/ is not a study folder"]),
    (("contribute", "/no/such/run"), ["/no/such/run: does not exist"]),
    (("naslib", "autoload", "maybe"), ["argument state: invalid choice: 'maybe'"]),
    (("surrogate", "fit", "--test-fraction", "2", "--out", "/tmp/never"), ["argument --test-fraction: must be a fraction"]),
    (("surrogate", "fit", "--model", "nope", "--out", "/tmp/never"), ["argument --model: unknown surrogate model 'nope'"]),
    (("surrogate", "eval", "--learning-curve", "-5"), ["argument --learning-curve: must be >= 1"]),
    (("surrogate", "predict",), ["no architecture given"]),
])
def test_every_command_names_a_bad_argument_in_one_line(shared_data, args, names):
    out = ecnas(*args)
    err = out.stderr.strip()
    assert out.returncode in (1, 2) and "Traceback" not in err, err
    assert len(err.splitlines()) <= 2 and all(n in err for n in names), err  # contribute adds its verdict line


def test_building_the_parser_loads_no_heavy_library():
    """`ecnas --help` stays fast because the parser needs neither pandas, torch, numpy nor the plugins
    (timed in benchmarks/bench_cli_startup.py; timings do not belong in tests)."""
    code = ("import sys; from ecnas_plugin.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('pandas', 'torch', 'numpy', 'lightgbm', 'ecnas_plugin.registry') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
