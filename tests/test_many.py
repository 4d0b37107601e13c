"""Several inputs, folders and output folders for blur, sharpen, edge and apply: batch's
engine under the single-file commands, with the same results as one file at a time."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image as PILImage

from convcli.cli import main

RNG = np.random.default_rng(23)


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def files(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    paths = []
    for i, name in enumerate(["a.png", "b.jpg", "sub/c.png"]):
        arr = (RNG.random((20 + i, 17, 3)) * 255).astype(np.uint8)
        PILImage.fromarray(arr).save(src / name)
        paths.append(src / name)
    return src, paths


@pytest.mark.parametrize(
    "command",
    [
        ["blur", "--sigma", "1.5"],
        ["sharpen"],
        ["edge"],
        ["edge", "--operator", "log"],
        ["apply", "-k", "emboss", "--op", "correlate"],
    ],  # fmt: skip
)
def test_several_files_give_what_each_alone_gives(tmp_path, files, command):
    src, paths = files
    out = tmp_path / "out"
    result = run(*command, paths[0], paths[1], "-o", f"{out}/", "--jobs", "2")
    assert result.exit_code == 0, result.output
    for p in paths[:2]:
        alone = tmp_path / f"alone{p.suffix}"
        assert run(*command, p, "-o", alone).exit_code == 0
        assert (out / p.name).read_bytes() == alone.read_bytes(), p.name


def test_a_folder_and_a_file_into_an_existing_folder(tmp_path, files):
    src, paths = files
    extra = tmp_path / "extra.png"
    PILImage.fromarray((RNG.random((9, 8, 3)) * 255).astype(np.uint8)).save(extra)
    out = tmp_path / "out"
    out.mkdir()
    result = run("blur", src, extra, "-o", out, "--recursive", "--format", "jpg", "-q")
    assert result.exit_code == 0, result.output
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.jpg")) == [
        "a.jpg", "b.jpg", "extra.jpg", "sub/c.jpg",
    ]  # fmt: skip
    # one input into a folder (its name ends in /): the folder is made
    result = run("blur", extra, "-o", f"{tmp_path / 'one'}/")
    assert result.exit_code == 0 and (tmp_path / "one" / "extra.png").is_file()


def test_batch_rules_hold_for_many_files(tmp_path, files):
    src, paths = files
    out = tmp_path / "out"
    assert run("sharpen", src, "-o", out, "-q").exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = run("sharpen", src, "-o", out)
    assert result.exit_code == 1 and "already exist" in result.stderr
    assert run("sharpen", src, "-o", out, "--skip-existing", "-q").exit_code == 0
    assert run("sharpen", src, "-o", out, "--overwrite", "--amount", "2", "-q").exit_code == 0
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after.keys() == before.keys() and after != before
    # never onto an input: the inputs' own folder as output, same format
    snapshot = {p: p.read_bytes() for p in paths}
    result = run("blur", paths[0], paths[1], "-o", src)
    assert result.exit_code == 1 and "inside the input folder" not in result.stderr
    assert "which is one of the inputs" in result.stderr
    assert {p: p.read_bytes() for p in paths} == snapshot


def test_options_that_need_many_files_or_one(tmp_path, files):
    src, paths = files
    result = run("blur", paths[0], "-o", tmp_path / "x.png", "--jobs", "2", "--recursive")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --recursive, --jobs: for several inputs")
    result = run("blur", paths[0], paths[1], "--in-place")
    assert result.exit_code == 2 and "--in-place takes one input file" in result.stderr
    result = run("blur", paths[0], paths[1])
    assert result.exit_code == 2 and "need -o/--output DIR" in result.stderr
    result = run("blur", "-", paths[1], "-o", tmp_path / "d/")
    assert result.exit_code == 2 and "standard input" in result.stderr
    result = run("blur", tmp_path / "missing.png", paths[1], "-o", tmp_path / "d/")
    assert result.exit_code == 1 and "missing.png: input does not exist" in result.stderr
    assert not (tmp_path / "d").exists()


def test_report_lists_the_inputs_and_the_edge_operator(tmp_path, files):
    src, paths = files
    report = tmp_path / "r.json"
    result = run("edge", paths[0], src / "sub", "-o", tmp_path / "e", "--report", report, "-q")
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["inputs"] == [os.path.abspath(paths[0]), os.path.abspath(src / "sub")]
    assert data["edge"] == "sobel" and data["counts"]["processed"] == 2


@pytest.mark.parametrize("name", ["jpg", "JPEG", "tif", "tiff", ".png"])
def test_format_names_are_one_set_everywhere(tmp_path, files, name):
    src, paths = files
    single = run("blur", paths[0], "-o", tmp_path / "x", "--format", name)
    assert single.exit_code == 0, single.output
    many = run("batch", src, "-o", tmp_path / "b", "-k", "box", "--format", name, "-q")
    assert many.exit_code == 0, many.output
    assert run("blur", paths[0], "-o", tmp_path / "y", "--format", "gif").exit_code == 2


def test_batch_takes_the_shells_glob_too(tmp_path, files):
    src, paths = files
    out = tmp_path / "out"
    result = run("batch", paths[0], paths[1], "-o", out, "-k", "box", "-q")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.jpg"]
    alone = tmp_path / "alone.png"
    assert run("apply", paths[0], "-k", "box", "-o", alone).exit_code == 0
    assert (out / "a.png").read_bytes() == alone.read_bytes()
    # one file given to batch still goes into the folder -o
    one = tmp_path / "one"
    assert run("batch", paths[0], "-o", one, "-k", "box", "-q").exit_code == 0
    assert (one / "a.png").is_file()
