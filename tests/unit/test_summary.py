"""`pggan summary`: Table 2 of the paper reproduced for the paper config; clear errors for bad configs."""
from __future__ import annotations

import re

import pytest
import torch

from pggan.config import ModelConfig
from pggan.nn.networks import Discriminator, Generator
from pggan.nn.summary import format_count, model_summaries, summarize
from pipelines.cli import COMMANDS, main


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def exact_totals(text: str) -> list[int]:
    return [int(m.replace(",", "")) for m in re.findall(r"Total \(Table 2\)\s+\S+\s+\(([\d,]+)\)", text)]


def test_summary_of_the_paper_config_prints_table_2(capsys: pytest.CaptureFixture) -> None:
    code, out, err = run_cli(capsys, "summary", "--config", "celeba-hq-1024.yaml")
    assert code == 0 and err == ""
    totals = exact_totals(out)
    assert len(totals) == 2                                                 # G and D
    assert all(23.05e6 <= t <= 23.15e6 for t in totals)
    assert len(re.findall(r"Total \(Table 2\)\s+23\.1M", out)) == 2
    lines = out.splitlines()
    row = lambda module: next(l for l in lines if f" {module} " in l).split()  # noqa: E731
    assert row("b4.dense")[-1] == "4.2M" and row("b4.dense")[:2] == ["Conv", "4x4"]
    assert row("b8.conv0")[-1] == "2.4M"
    assert row("torgb1024")[-3:] == ["linear", "3x1024x1024", "51"]
    assert row("b4.mbstd")[-2] == "513x4x4"
    assert row("b4.conv4x4")[-2:] == ["512x1x1", "4.2M"]
    assert row("b4.out")[-1] == "513"
    assert "torgb512" in out.split("Used only during fade-in")[1]          # listed, but outside the total


def test_summary_of_the_stylegan_preset_gives_26_2m_for_g_and_23_1m_for_d(capsys: pytest.CaptureFixture) -> None:
    code, out, err = run_cli(capsys, "summary", "--config", "pipelines/configs/stylegan-ffhq-1024.yaml")
    assert code == 0 and err == ""
    assert out.startswith("StyleGenerator 1024x1024")
    g_total, d_total = exact_totals(out)
    assert abs(g_total - 26.2e6) / 26.2e6 < 0.01                            # the StyleGAN paper's G
    assert abs(d_total - 23.1e6) / 23.1e6 < 0.01                            # PGGAN's D (the blur has no weights)
    assert len(re.findall(r" mapping\.fc\d ", out)) == 8                    # the 8-layer mapping network


def test_summary_rows_follow_the_forward_pass_and_match_real_shapes() -> None:
    model = ModelConfig(latent_dim=16, fmap_base=128, fmap_max=16)
    G_meta, D_meta = model_summaries(model, 16)
    G_real = summarize(Generator(model, 16), torch.randn(2, 16))
    D_real = summarize(Discriminator(model, 16), torch.randn(2, 3, 16, 16))
    assert G_meta.rows == G_real.rows and D_meta.rows == D_real.rows
    assert [r.name for r in G_real.rows if not r.fade_in] == [
        "b4.dense", "b4.conv", "b8.up", "b8.conv0", "b8.conv1", "b16.up", "b16.conv0", "b16.conv1", "torgb16"]
    assert G_real.total == sum(p.numel() for n, p in Generator(model, 16).named_parameters()
                               if not n.startswith("torgb8"))
    assert D_real.rows[-1].shape == (1, 1, 1)


@pytest.mark.parametrize("n,text", [(51, "51"), (2320, "2.3k"), (589_824, "590k"), (4_194_816, "4.2M")])
def test_counts_are_written_as_in_table_2(n: int, text: str) -> None:
    assert format_count(n) == text


def test_summary_resolution_and_overrides(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli(capsys, "summary", "--set", "model.latent_dim=32", "--resolution", "8")
    assert code == 0
    assert "Generator 8x8" in out and "Discriminator 8x8" in out
    assert re.search(r"Latent vector\s+-\s+32x1x1", out)


@pytest.mark.parametrize("argv,message", [
    (["--config", "no-such-file.yaml"], "cannot read it"),
    (["--set", "model.latent_size=3"], "model.latent_size: unknown key"),
    (["--set", "model.fmap_base=abc"], "model.fmap_base"),
    (["--resolution", "12"], "resolution=12"),
])
def test_bad_config_is_one_line_on_stderr_and_exit_2(capsys: pytest.CaptureFixture, argv: list[str],
                                                     message: str) -> None:
    code, out, err = run_cli(capsys, "summary", *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_malformed_yaml_is_reported_without_traceback(capsys: pytest.CaptureFixture, tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2\n")
    code, _, err = run_cli(capsys, "summary", "--config", str(bad))
    assert code == 2 and err.startswith("pggan summary: error:") and err.count("\n") == 1


def test_every_registered_command_has_help_text(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_the_pggan_console_script_is_this_command_line() -> None:
    import importlib
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    module, _, name = pyproject["project"]["scripts"]["pggan"].partition(":")
    assert getattr(importlib.import_module(module), name) is main


def test_summary_imports_no_pipeline_module_and_no_ray() -> None:
    import subprocess
    import sys

    code = ("import sys; from pipelines.cli import main; status = main(['summary', '--resolution', '8']); "
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith(('ray.', 'pipelines.')))); "
            "sys.exit(status)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "['pipelines.cli']"     # only the chosen command's imports
