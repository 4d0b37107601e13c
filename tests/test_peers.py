"""probe --peers: what other libraries compute, found by convcli's own identification."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from convcli import peers
from convcli.cli import main
from convcli.peers import COLUMNS, PEERS, NotInstalled, Peer, probe_peer, probe_peers

README = Path(__file__).resolve().parent.parent / "README.md"


def _by_name(results):
    return {r.peer.name: r for r in results}


def test_scipy_and_pillow_as_measured():
    found = _by_name(
        probe_peers(
            ["scipy.ndimage.convolve", "scipy.ndimage.correlate", "scipy.signal.convolve2d",
             "scipy.signal.correlate2d", "PIL.ImageFilter.Kernel"]
        )
    )  # fmt: skip
    assert all(r.status == "ok" for r in found.values())
    conv = found["scipy.ndimage.convolve"]
    assert conv.computes() == "convolve"
    assert conv.rounding() == "truncate"  # uint8 output: the float result is cast, truncated
    assert conv.even_origin() == "(1, 1) (convolve)"  # rows // 2, cols // 2, as convcli's
    assert found["scipy.ndimage.correlate"].computes() == "correlate"
    sig = found["scipy.signal.convolve2d"]
    assert sig.computes() == "convolve" and sig.output_type == "float"
    assert sig.rounding() == "none (float output)"
    assert sig.even_origin() == "(0, 0) (convolve)"  # mode="same" keeps the first of the centres
    assert found["scipy.signal.correlate2d"].computes() == "correlate"
    pil = found["PIL.ImageFilter.Kernel"]
    # neither: Pillow reverses the kernel's rows only (its impulse response is the kernel
    # mirrored left-right)
    assert pil.computes() == "convolve-y"
    assert pil.rounding() == "nearest"
    assert pil.even_origin() == "n/a (3x3 and 5x5 kernels only)"
    assert pil.odd.verdict == "exact"


def _fake(name, run):
    return Peer(name, "numpy", run, "convolution"), (lambda: "1.0")


def test_a_peer_made_with_numpy_is_identified():
    # a "tool" that correlates with the kernel anchored at its top-left weight and truncates
    def run(img, w):
        kh, kw = w.shape
        pad = np.pad(img.astype(np.float64), ((0, kh - 1), (0, kw - 1)))
        out = sum(w[a, b] * pad[a : a + img.shape[0], b : b + img.shape[1]]
                  for a in range(kh) for b in range(kw))  # fmt: skip
        return np.floor(out + 1e-9).astype(np.uint8)

    result = probe_peer(*_fake("top-left", run))
    assert result.status == "ok"
    assert result.computes() == "correlate"
    assert result.even_origin() == "(0, 0) (correlate)"
    assert result.rounding() == "truncate"
    odd = result.odd.best.candidate
    assert odd.origin == (0, 0)  # the odd kernel is anchored at its corner too


def test_absent_peers_are_listed_as_not_installed_never_failed(monkeypatch):
    monkeypatch.setenv("PATH", "")  # no vips, no convert

    def gone():
        raise NotInstalled("nothing")

    absent = probe_peer(Peer("absent", "absent", lambda i, w: i, "convolve"), gone)
    assert absent.status == "not installed" and absent.row()[3] == "not installed"
    found = _by_name(probe_peers(["vips conv", "convert -convolve"]))
    assert {r.status for r in found.values()} == {"not installed"}
    cli_peers = tuple(p for p in PEERS if p[0].library == "imagemagick")
    monkeypatch.setattr(peers, "PEERS", cli_peers)
    result = CliRunner().invoke(main, ["probe", "--peers", "--json"])
    assert result.exit_code == 0, result.output
    assert {r["status"] for r in json.loads(result.stdout)} == {"not installed"}


def test_another_program_of_a_peers_name_is_not_that_peer(monkeypatch, tmp_path):
    # Windows' convert.exe, or a stand-in script that names ImageMagick only to say it is not
    def program(name, script):
        (tmp_path / name).write_text("#!/bin/sh\n" + script + "\n")
        (tmp_path / name).chmod(0o755)

    program("convert", "echo 'convert: ImageMagick is not installed here' >&2; exit 1")
    program("vips", "echo 'vips-8.14.1'")  # says its name and version: taken as vips
    monkeypatch.setenv("PATH", str(tmp_path))
    found = _by_name(
        probe_peers(["vips conv", "convert -convolve", "convert -morphology Convolve"])
    )
    assert {name: r.status for name, r in found.items()} == {
        "vips conv": "failed",  # it is vips, and its run failed: a finding
        "convert -convolve": "not installed",
        "convert -morphology Convolve": "not installed",
    }
    program("convert", "echo 'Invalid drive specification.'")  # exit 0, another program
    program("vips", "echo 'usage: something else' >&2; exit 2")
    found = _by_name(probe_peers(["vips conv", "convert -convolve"]))
    assert {r.status for r in found.values()} == {"not installed"}


def test_a_peer_that_fails_is_reported_and_the_others_still_run(monkeypatch):
    def broken(img, w):
        raise RuntimeError("segfault in the peer\nmore")

    bad = probe_peer(*_fake("broken", broken))
    assert bad.status == "failed" and bad.message == "segfault in the peer"
    assert bad.row()[3] == "failed: segfault in the peer"

    def wrong_shape(img, w):
        return img[1:]

    assert probe_peer(*_fake("cropping", wrong_shape)).status == "failed"
    chosen = [_fake("broken", broken), *[p for p in PEERS if p[0].name == "scipy.ndimage.convolve"]]
    monkeypatch.setattr(peers, "PEERS", tuple(chosen))
    results = probe_peers()
    assert [r.status for r in results] == ["failed", "ok"]


def test_cli_probe_peers_json_markdown_and_table(monkeypatch):
    few = tuple(p for p in PEERS if p[0].library in ("scipy", "pillow", "torch"))
    monkeypatch.setattr(peers, "PEERS", few)
    runner = CliRunner()
    result = runner.invoke(main, ["probe", "--peers", "--json"])
    assert result.exit_code == 0, result.output
    report = {r["peer"]: r for r in json.loads(result.stdout)}
    assert set(report) == {p.name for p, _ in few}
    assert report["scipy.ndimage.convolve"]["computes"] == "convolve"
    assert report["scipy.ndimage.convolve"]["odd"]["best"]["operation"] == "convolve"
    assert all(r["status"] in ("ok", "not installed", "failed") for r in report.values())
    md = runner.invoke(main, ["probe", "--peers", "--markdown"])
    assert md.exit_code == 0
    lines = md.stdout.strip().splitlines()
    assert lines[0] == "| " + " | ".join(COLUMNS) + " |"
    assert len(lines) == 2 + len(few)
    table = runner.invoke(main, ["probe", "--peers"])
    assert table.exit_code == 0 and "What each library computes" in table.stdout
    misuse = runner.invoke(main, ["probe", "--markdown"])
    assert misuse.exit_code == 2 and "--markdown go with --peers" in misuse.stderr


def _table_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.strip().splitlines()[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        rows[cells[0]] = cells
    return rows


def test_the_readme_table_is_what_the_generator_prints_for_the_peers_present():
    text = README.read_text()
    match = re.search(r"<!-- peers-table -->\n(.*?)\n<!-- /peers-table -->", text, re.S)
    assert match, "README: the generated peers table (between its markers) is missing"
    readme = _table_rows(match.group(1))
    generated = _table_rows(peers.markdown_table(probe_peers()))
    assert set(readme) == set(generated)  # every peer has its row
    compared = 0
    for name, row in generated.items():
        if row[3] == "not installed":  # measured elsewhere: the README keeps that row
            continue
        # every column but the version
        assert row[:1] + row[2:] == readme[name][:1] + readme[name][2:], name
        compared += 1
    assert compared >= 5  # scipy's four and Pillow at least
