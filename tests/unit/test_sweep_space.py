"""The schedule sweep's search space: ranges parsed and checked before any trial starts (bad ones exit 2 with one
line naming the key), trial configs built from sampled values, trials sized to the cluster, best config loadable."""
from __future__ import annotations

import pytest

from pggan import sweep as sw
from pggan.config import ConfigError, load_config
from pggan.secret_keys import without_secrets
from pipelines import tune_schedule


@pytest.fixture
def tiny():
    return load_config("tiny.yaml")


def test_global_ranges_give_one_fade_and_one_stabilize_dimension(tiny):
    space = sw.build_space(tiny, fade="0.1:0.3", stabilize="0.05:0.2")
    assert [(d.key, d.low, d.high) for d in space.dims] == [
        ("schedule.fade_kimg", 0.1, 0.3), ("schedule.stabilize_kimg", 0.05, 0.2)]


def test_without_ranges_the_search_spans_half_to_twice_the_config(tiny):
    space = sw.build_space(tiny)
    assert [(d.low, d.high) for d in space.dims] == [(0.1, 0.4), (0.1, 0.4)]


def test_per_res_searches_each_stage_and_skips_the_first_stage_fade(tiny):
    space = sw.build_space(tiny, fade="0.1:0.3", stabilize="0.1:0.3", per_res=True)
    assert [d.key for d in space.dims] == ["schedule.fade_kimg_per_res.8", "schedule.stabilize_kimg_per_res.4",
                                           "schedule.stabilize_kimg_per_res.8"]
    cfg = sw.trial_config(tiny, space, {"schedule.fade_kimg_per_res.8": 0.25,
                                        "schedule.stabilize_kimg_per_res.4": 0.1,
                                        "schedule.stabilize_kimg_per_res.8": 0.3})
    assert cfg.schedule.fade_kimg_per_res == {8: 0.25}
    assert cfg.schedule.stabilize_kimg_per_res == {4: 0.1, 8: 0.3}


def test_trial_values_are_whole_images(tiny):
    space = sw.build_space(tiny, fade="0.05:0.15", stabilize="0.05:0.15")
    values = sw.trial_values(space, {"schedule.fade_kimg": 0.052000000000000005, "schedule.stabilize_kimg": 0.1234})
    assert values == {"schedule.fade_kimg": 0.052, "schedule.stabilize_kimg": 0.123}


def test_total_kimg_fixes_each_stage_and_derives_stabilize(tiny):
    space = sw.build_space(tiny, total=0.4, fade="0.1:0.3")
    assert [d.key for d in space.dims] == ["schedule.fade_kimg"]
    cfg = sw.trial_config(tiny, space, {"schedule.fade_kimg": 0.15})
    assert (cfg.schedule.fade_kimg, cfg.schedule.stabilize_kimg) == (0.15, 0.25)
    assert cfg.schedule.stabilize_kimg_per_res[4] == 0.4          # the first stage has no fade: all stabilize


def test_other_schedule_keys_are_searched_with_their_own_distribution(tiny):
    space = sw.build_space(tiny, search=["schedule.lr_per_res.8=1e-4:1e-2", "batch_size.8=8:32"])
    dims = {d.key: d for d in space.dims}
    assert dims["schedule.lr_per_res.8"].kind == "log"
    assert (dims["schedule.batch_size.8"].kind, dims["schedule.batch_size.8"].step) == ("int", 2)
    cfg = sw.trial_config(tiny, space, {"schedule.batch_size.8": 24.0, "schedule.lr_per_res.8": 0.003})
    assert cfg.schedule.batch_size[8] == 24 and cfg.schedule.lr_per_res[8] == 0.003


@pytest.mark.parametrize("kwargs, named", [
    ({"fade": "-1:2"}, "--fade-kimg"),
    ({"stabilize": "0.5:0.1"}, "--stabilize-kimg"),
    ({"fade": "a:b"}, "--fade-kimg"),
    ({"total": 0.3, "fade": "0.1:0.5"}, "--fade-kimg"),
    ({"total": 0.3, "stabilize": "0.1:0.2"}, "--stabilize-kimg"),
    ({"search": ["schedule.warmup_kimg=1:2"]}, "schedule.warmup_kimg"),
    ({"search": ["optim.lr=1e-4:1e-3"]}, "optim.lr"),
    ({"search": ["schedule.batch_size.64=8:16"]}, "schedule.batch_size.64"),
    ({"search": ["schedule.fade_kimg_per_res.4=0.1:0.2"]}, "schedule.fade_kimg_per_res.4"),
    ({"search": ["schedule.batch_size.8=3:16"]}, "schedule.batch_size.8"),
    ({"search": ["schedule.lr_per_res.8=0:1e-3"]}, "schedule.lr_per_res.8"),
    ({"search": ["schedule.fade_kimg=0.1:0.2"]}, "schedule.fade_kimg"),
    ({"search": ["schedule.batch_size.8"]}, "schedule.batch_size.8"),
])
def test_invalid_bounds_fail_naming_the_key(tiny, kwargs, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        sw.build_space(tiny, **kwargs)


def test_bounds_that_make_an_invalid_config_fail_before_any_trial(tiny):
    with pytest.raises(ConfigError, match=r"schedule\.batch_size\.8"):
        sw.build_space(tiny, search=["schedule.batch_size.8=0:16"])


@pytest.mark.parametrize("argv, named", [
    (["--fade-kimg=-0.1:0.2"], "--fade-kimg"),
    (["--stabilize-kimg", "0.3:0.1"], "--stabilize-kimg"),
    (["--total-kimg", "0.2", "--fade-kimg", "0.1:0.3"], "--fade-kimg"),
    (["--search", "schedule.nope=1:2"], "schedule.nope"),
    (["--max-concurrent", "0"], "--max-concurrent"),
    (["--name", "bad name"], "--name"),
])
def test_the_command_exits_2_with_one_line_before_starting_ray(argv, named, capsys):
    import ray

    code = tune_schedule.main(["--config", "tiny.yaml", "--num-samples", "2", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and named in err, err
    assert not ray.is_initialized()


def test_concurrency_fits_the_cluster_cpus_and_gpus(tiny):
    one_worker = load_config("tiny.yaml", ["scaling.num_workers=1"])
    assert sw.max_concurrent_trials(tiny, 4, 0, num_samples=8) == 1             # 2 x 0.5 + 1 + 0.01 per trial
    assert sw.max_concurrent_trials(one_worker, 4, 0, num_samples=8) == 2
    assert sw.max_concurrent_trials(one_worker, 4, 0, num_samples=8, requested=1) == 1
    assert sw.max_concurrent_trials(one_worker, 64, 0, num_samples=3) == 3        # never more than the trials
    def gpus(workers: int):
        return load_config("tiny.yaml", ["scaling.use_gpu=true", f"scaling.num_workers={workers}",
                                         "scaling.cpus_per_worker=4", "schedule.batch_size={4: 16, 8: 16}"])
    assert sw.max_concurrent_trials(gpus(2), 64, 8, num_samples=16) == 3         # 8 GPUs: 3 x 2, 2 left for eval
    assert sw.max_concurrent_trials(gpus(4), 64, 8, num_samples=16) == 1         # 2 x 4 would leave none
    assert sw.max_concurrent_trials(gpus(4), 64, 4, num_samples=16) == 1
    with pytest.raises(ConfigError, match="scaling"):
        sw.max_concurrent_trials(tiny, 1.5, 0, num_samples=2)


def test_trial_run_ids_are_deterministic_from_the_tune_trial_index():
    assert sw.trial_index("4a1f2_00003") == 3
    assert sw.trial_run_id("sched1", sw.trial_index("ffff0_00012")) == "sched1-t12"


def test_best_config_yaml_loads_back_with_load_config(tiny, tmp_path):
    space = sw.build_space(tiny, fade="0.1:0.3", stabilize="0.1:0.3", per_res=True)
    cfg = sw.trial_config(tiny, space, {"schedule.fade_kimg_per_res.8": 0.123})
    cfg = cfg.replace(storage=type(cfg.storage)(root=str(tmp_path), access_key_id="AKIA", secret_access_key="s3cr3t"))
    path = tmp_path / "best.yaml"
    path.write_text(sw.best_config_yaml(cfg, ["best of sweep x"]))
    loaded = load_config(path)
    assert loaded.schedule == cfg.schedule and loaded.model == cfg.model
    assert "s3cr3t" not in path.read_text() and loaded.storage.secret_access_key == ""
    assert loaded == without_secrets(cfg)             # what the sweep checks before writing best.yaml
