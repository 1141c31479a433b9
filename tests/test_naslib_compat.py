"""The bridge without NASLib: no NASLib import at import time, a clear message when it is missing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ecnas_plugin.naslib import compat


def test_importing_the_bridge_imports_neither_naslib_nor_torchvision():
    code = ("import sys, ecnas_plugin, ecnas_plugin.naslib, ecnas_plugin.naslib.runner, ecnas_plugin.objectives; "
            "print(sorted(m for m in ('naslib', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_packages_are_named_with_install_steps(monkeypatch, capsys):
    from ecnas_plugin.naslib import runner

    real = compat.importlib.util.find_spec
    monkeypatch.setattr(compat.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("naslib", "fvcore") else real(name, *a))
    assert runner.run("whatever.yaml", []) == 2
    err = capsys.readouterr().err
    assert "missing: naslib" in err and "fvcore (pip: fvcore)" in err
    assert "git clone -b Develop https://github.com/automl/NASLib" in err


def test_collections_aliases_are_added(monkeypatch):
    import collections

    monkeypatch.delattr(collections, "Iterable", raising=False)
    compat._alias_collections_abcs()
    assert collections.Iterable is collections.abc.Iterable


@pytest.mark.skipif(compat.importlib.util.find_spec("naslib") is not None, reason="NASLib is installed here")
def test_install_without_naslib_raises_naslib_unavailable():
    from ecnas_plugin import naslib as bridge

    with pytest.raises(bridge.NaslibUnavailable, match="naslib"):
        bridge.install()


# ---------------------------------------------------------------- the printed set-up (issue 15, item 16)
REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def _pip_lines(steps: list[str]) -> list[str]:
    """The pip commands, each on one line (backslash-newlines joined)."""
    return [" ".join(s.replace("\\\n", " ").split()) for s in steps if s.startswith("pip ")]


def test_printed_steps_install_this_checkout_with_numpy_below_2_4():
    """From a checkout the steps install it (``pip install -e PATH``), never the unpublished
    ``ecnas-plugin`` from an index; numpy < 2.4 is a constraint of the one resolution, so nothing is
    installed at 2.4 and downgraded later."""
    assert compat.plugin_source() == ("checkout", str(REPO))
    steps = compat.install_steps()
    help_text = compat.install_help()
    assert "pip install ecnas-plugin" not in help_text and f"checkout at {REPO}" in help_text
    constraints = next(s for s in steps if "naslib-constraints.txt" in s and s.startswith("printf"))
    assert "numpy<2.4" in constraints and "torch==" in constraints
    assert steps.index(constraints) < min(i for i, s in enumerate(steps) if s.startswith("pip "))
    (install,) = _pip_lines(steps)  # one resolution: no step downgrades what an earlier one installed
    assert install.startswith(f"pip install -c naslib-constraints.txt -e {REPO} torchvision==")
    assert all(name in install for name in compat.NASLIB_PIP)
    assert steps[0] == "git clone -b Develop https://github.com/automl/NASLib NASLib"
    assert "naslib-src.pth" in steps[-2] and "bridge.install()" in steps[-1]


class _Dist:
    def __init__(self, direct_url: str | None):
        self.direct_url = direct_url

    def read_text(self, name: str) -> str | None:
        return self.direct_url if name == "direct_url.json" else None


@pytest.mark.parametrize("direct_url, kind, line", [
    ('{"url": "file:///wheels/ecnas_plugin-0.1.0-py3-none-any.whl", "archive_info": {}}', "wheel",
     "/wheels/ecnas_plugin-0.1.0-py3-none-any.whl"),
    ('{"url": "file:///src/ecnas%20plugin", "dir_info": {"editable": true}}', "editable", "-e '/src/ecnas plugin'"),
    ('{"url": "file:///src/ecnas", "dir_info": {}}', "directory", "/src/ecnas"),
    (None, "index", "ecnas-plugin==0.1.0"),
])
def test_printed_steps_for_an_installed_copy(monkeypatch, tmp_path, direct_url, kind, line):
    """An installed wheel (no source tree around the package) is installed again from what pip
    recorded: the wheel file, the source folder, or the index it came from."""
    from ecnas_plugin.version import __version__

    monkeypatch.setattr(compat, "_package_root", lambda: tmp_path / "site-packages" / "ecnas_plugin")
    real = compat.importlib.metadata.distribution
    monkeypatch.setattr(compat.importlib.metadata, "distribution",
                        lambda name: _Dist(direct_url) if name == "ecnas-plugin" else real(name))
    assert compat.plugin_source()[0] == kind
    (install,) = _pip_lines(compat.install_steps())
    assert install.startswith(f"pip install -c naslib-constraints.txt {line.replace('0.1.0', __version__)} torchvision==")
    if kind == "wheel":
        assert "not there any more" in compat.install_help()  # the recorded wheel is gone: said so


@pytest.mark.parametrize("torch, vision", [("2.13.0", "0.28.0"), ("2.13.0+cpu", "0.28.0"), ("2.5.1", "0.20.1"),
                                           ("2.0.1", "0.15.2"), ("1.13.1", None)])
def test_torchvision_built_for_torch(torch, vision):
    assert compat.torchvision_for(torch.split("+")[0]) == vision


def test_steps_pin_the_torch_found_here(monkeypatch):
    monkeypatch.setattr(compat.importlib.metadata, "version", lambda name: "2.5.1+cu121")
    steps = compat.install_steps()
    assert "torch==2.5.1" in steps[2] and "torchvision==0.20.1" in _pip_lines(steps)[0]
    monkeypatch.setattr(compat.importlib.metadata, "version", lambda name: "1.12.0")  # no known pair: the tested one
    assert f"torch=={compat.TORCH_TESTED}" in compat.install_steps()[2]


# ---------------------------------------------------------------- shims are reversible (item 15)
def test_revert_undoes_the_collections_aliases(monkeypatch):
    import collections

    before = compat.applied()
    monkeypatch.delattr(collections, "Iterable", raising=False)
    monkeypatch.setattr(compat, "_applied", [])
    compat._alias_collections_abcs()
    assert collections.Iterable is collections.abc.Iterable and "collections.Iterable" in compat.applied()
    assert "collections.Iterable" in compat.revert()
    assert not hasattr(collections, "Iterable") and compat.applied() == []
    assert compat.revert() == []  # nothing left to undo
    if before:  # this process had the shims applied (NASLib tests ran before): put them back
        monkeypatch.undo()
        compat.apply()


# ---------------------------------------------------------------- provenance (item 15)
def _naslib_tree(root, version: str = "0.1.0"):
    package = root / "naslib"
    package.mkdir(parents=True)
    (package / "__version__.py").write_text(f'"""Version information."""\n__version__ = "{version}"\n')
    return package


def test_provenance_reads_the_commit_of_naslibs_own_source_tree(tmp_path):
    sha = "0123456789abcdef0123456789abcdef01234567"
    package = _naslib_tree(tmp_path / "NASLib")
    git = tmp_path / "NASLib" / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/Develop\n")
    (git / "refs" / "heads" / "Develop").write_text(sha + "\n")
    info = compat.naslib_provenance(package)
    assert (info["version"], info["commit"], info["path"]) == ("0.1.0", sha, str(package))
    (git / "refs" / "heads" / "Develop").unlink()  # a packed ref
    (git / "packed-refs").write_text(f"# pack-refs with: peeled fully-peeled sorted\n{sha} refs/heads/Develop\n")
    assert compat.naslib_provenance(package)["commit"] == sha
    (git / "HEAD").write_text(sha[::-1] + "\n")  # a detached HEAD
    assert compat.naslib_provenance(package)["commit"] == sha[::-1]


def test_provenance_says_unknown_rather_than_borrow_another_repository(tmp_path):
    """No .git in NASLib's source tree (an editable install of a downloaded copy): the commit is
    'unknown', and a repository further up (a project the venv lives in) is not taken for NASLib's."""
    (tmp_path / ".git" / "refs").mkdir(parents=True)
    (tmp_path / ".git" / "HEAD").write_text("0123456789abcdef0123456789abcdef01234567\n")
    package = _naslib_tree(tmp_path / "venv" / "src" / "NASLib", version="0.2.0")
    info = compat.naslib_provenance(package)
    assert info["commit"] == "unknown" and "no .git in" in info["commit_from"] and info["version"] == "0.2.0"


def test_the_readme_shows_the_printed_steps():
    """The README's NASLib block is what ``ecnas naslib run`` prints from a checkout (its path aside)."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## NASLib"):]
    block = section[section.index("```bash\n") + 8:]
    block = block[:block.index("```")]
    expected = "\n".join(compat.install_steps()).replace(f"-e {REPO} ", "-e /path/to/ecnas-plugin ")
    assert block.strip() == expected.replace(f"torch=={compat._torch_pair()[0]}", "torch==2.13.0").replace(
        f"torchvision=={compat._torch_pair()[1]}", "torchvision==0.28.0")
