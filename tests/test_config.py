"""Training config: YAML files, key=value overrides, typo and type errors."""

from __future__ import annotations

import textwrap
import time

import pytest
from helpers import ROOT, tiny_config

from flowdeblur.cli import main
from flowdeblur.errors import UserError
from flowdeblur.training.config import TrainConfig, load_config, to_dict, to_yaml, valid_keys

CONFIGS = ROOT / "configs"


@pytest.mark.parametrize("name", ["debug", "flow_pretrain", "joint", "release"])
def test_shipped_configs_load(name):
    config = load_config(CONFIGS / f"{name}.yaml")
    assert isinstance(config, TrainConfig)
    assert config.run_dir == f"runs/{name}"


def test_paper_and_release_settings():
    joint = load_config(CONFIGS / "joint.yaml")
    optim = joint.optim
    assert (optim.lr, optim.betas, optim.weight_decay) == (1e-3, (0.9, 0.999), 1e-6)
    assert (joint.data.batch_size, joint.data.crop_size, joint.steps) == (20, 256, 800_000)
    assert joint.schedule.kind == "constant" and joint.optim.grad_clip is None
    release = load_config(CONFIGS / "release.yaml")
    assert (release.optim.lr, release.optim.grad_clip, release.data.batch_size) == (1e-4, 5000, 10)
    assert (release.schedule.kind, release.schedule.power) == ("poly", 2.0)
    debug = load_config(CONFIGS / "debug.yaml")
    assert (debug.data.crop_size, debug.data.batch_size, debug.device) == (64, 2, "cpu")
    assert load_config(CONFIGS / "flow_pretrain.yaml").stage == "flow"


def test_overrides_convert_types():
    c = load_config(None, ["optim.lr=1e-4", "steps=8e5", "amp=false", "optim.betas=[0.8, 0.95]",
                           "optim.grad_clip=5000", "model.init_weights=w.safetensors",
                           "data.synthetic={max_camera_motion: 8}", "run_dir=123"])
    assert c.optim.lr == 1e-4 and isinstance(c.optim.lr, float)
    assert c.steps == 800_000 and isinstance(c.steps, int)
    assert c.amp is False
    assert c.optim.betas == (0.8, 0.95)
    assert c.optim.grad_clip == 5000.0 and isinstance(c.optim.grad_clip, float)
    assert c.model.init_weights == "w.safetensors"
    assert c.data.synthetic == {"max_camera_motion": 8}
    assert c.run_dir == "123"
    assert load_config(None, ["optim.grad_clip=null"]).optim.grad_clip is None


def test_yaml_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 10\noptim:\n  lr: 1e-3\n")  # "1e-3" is a string to PyYAML
    c = load_config(path, ["steps=12"])
    assert c.steps == 12 and c.optim.lr == 1e-3
    assert c.optim.weight_decay == 1e-6  # untouched default


@pytest.mark.parametrize(
    ("overrides", "bad", "hint"),
    [
        (["setps=3"], "setps", "steps"),
        (["optim.lrr=1"], "optim.lrr", "optim.lr"),
        (["lr=1"], "lr", "optim.lr"),  # right key, wrong section
        (["model.varaint=full"], "model.varaint", "model.variant"),
        (["log.checkpoint_evry=5"], "log.checkpoint_evry", "log.checkpoint_every"),
    ],
)
def test_typos_name_the_key_and_suggest(overrides, bad, hint):
    with pytest.raises(UserError) as e:
        load_config(None, overrides)
    assert f"'{bad}'" in str(e.value) and f"did you mean '{hint}'" in str(e.value)


def test_typo_in_yaml_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  crop_szie: 64\n")
    with pytest.raises(UserError, match=r"data\.crop_szie.*did you mean 'data\.crop_size'"):
        load_config(path)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["steps=abc"], "'steps' expects an integer"),
        (["steps=1.5"], "'steps' expects an integer"),
        (["amp=3"], "'amp' expects true/false"),
        (["optim.betas=[0.9]"], "'optim.betas' expects a list of 2"),
        (["model.variant=nope"], "model.variant must be one of"),
        (["stage=pretrain"], "stage must be one of"),
        (["steps=0"], "steps must be > 0"),
        (["optim.betas=[0.9, 1.0]"], r"optim.betas\[1\]"),
        (["data.source=real"], "needs data.real_root"),
        (["stage=flow", "model.variant=no_rnn"], "no flow network"),
        (["stage=flow", "data.crop_size=96"], "multiple of 64"),
        (["stage=flow", "data.source=mix", "data.real_root=x"], "ground-truth flow"),
        (["data.synthetic={size: [64, 64]}"], "data.crop_size"),
        (["model"], "key=value"),
        (["model=3"], "section 'model' must be a mapping"),
    ],
)
def test_bad_values(overrides, match):
    with pytest.raises(UserError, match=match):
        load_config(None, overrides)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1,\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="mapping"):
        load_config(bad)


def test_print_config_round_trips(tmp_path, capsys):
    assert main(["train", "--config", str(CONFIGS / "release.yaml"), "optim.lr=3e-5",
                 "--print-config"]) == 0
    text = capsys.readouterr().out
    path = tmp_path / "printed.yaml"
    path.write_text(text)
    again = load_config(path)
    assert again.optim.lr == 3e-5
    assert to_dict(again) == to_dict(load_config(CONFIGS / "release.yaml", ["optim.lr=3e-5"]))
    assert to_yaml(again) == text


def test_cli_reports_typo_as_one_line(capsys):
    assert main(["train", "--config", str(CONFIGS / "debug.yaml"), "optim.lrr=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "did you mean 'optim.lr'" in err


def test_valid_keys_cover_sections():
    keys = valid_keys()
    assert {"steps", "optim.lr", "model.variant", "data.crop_size", "log.every"} <= set(keys)


def _alias_bomb(levels: int = 9, indent: str = "") -> str:
    """Billion laughs: ``levels`` anchors, each a list of ten aliases of the one before
    (10**levels values once expanded, a few hundred bytes of text)."""
    lines = [f"{indent}a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"{indent}a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("where", ["synthetic", "quoted_value"])
def test_yaml_alias_bombs_are_refused_in_one_line_within_seconds(tmp_path, capsys, where):
    path = tmp_path / "bomb.yaml"
    text = "data:\n  synthetic:\n" + _alias_bomb(indent="    ")
    # quoted_value: a key whose type error would print the whole expanded value
    path.write_text(text + ("steps: *a8\n" if where == "quoted_value" else ""))
    start = time.perf_counter()
    with pytest.raises(UserError, match="aliases expand to more than 100,000 nodes"):
        load_config(path)
    assert main(["train", "--config", str(path), "--print-config"]) == 2
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "alias" in err
    assert elapsed < 10


def test_yaml_alias_bomb_in_an_override_is_refused():
    bomb = "{" + _alias_bomb().replace("\n", ", ").rstrip(", ") + "}"
    with pytest.raises(UserError, match="override data.synthetic: its YAML aliases expand"):
        load_config(None, [f"data.synthetic={bomb}"])


def test_yaml_alias_limit_counts_expanded_nodes():
    def bomb(levels: int) -> str:
        return "{" + _alias_bomb(levels).replace("\n", ", ").rstrip(", ") + "}"

    synthetic = load_config(None, [f"data.synthetic={bomb(4)}"]).data.synthetic  # 12,350 nodes
    assert synthetic["a3"][9][9][9][9] == "lol"
    with pytest.raises(UserError, match="more than 100,000 nodes"):  # 123,450 nodes
        load_config(None, [f"data.synthetic={bomb(5)}"])
    with pytest.raises(UserError, match="refers to a value that contains it"):
        load_config(None, ["data.synthetic={a: &a [1, *a]}"])


def test_ordinary_anchors_and_merge_keys_keep_working(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text(textwrap.dedent("""\
        optim: {lr: &rate 3.0e-4, betas: &betas [0.9, 0.99]}
        data:
          scale_range: *betas
          synthetic: &scene {max_camera_motion: 4.0, max_object_motion: 2.0}
          degrade:
            <<: {noise_probability: 0.5}
            quality: [70, 90]
        schedule: {power: *rate}
    """))
    c = load_config(path)
    assert c.optim.lr == c.schedule.power == 3.0e-4
    assert c.optim.betas == c.data.scale_range == (0.9, 0.99)
    assert c.data.synthetic == {"max_camera_motion": 4.0, "max_object_motion": 2.0}
    assert c.data.degrade == {"noise_probability": 0.5, "quality": [70, 90]}


@pytest.mark.parametrize("depth", [100, 20_000])
def test_deeply_nested_yaml_is_one_line(tmp_path, capsys, depth):
    path = tmp_path / "deep.yaml"
    path.write_text("data:\n  synthetic: {x: " + "[" * depth + "]" * depth + "}\n")
    assert main(["train", "--config", str(path), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nested too deeply" in err
    with pytest.raises(UserError, match="nested too deeply"):
        load_config(None, ["data.synthetic={x: " + "[" * depth + "]" * depth + "}"])


def test_yaml_that_is_not_utf8_is_one_line(tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("# réglages\nsteps: 3\n".encode("latin-1"))
    assert main(["train", "--config", str(path), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not UTF-8" in err and "Traceback" not in err


def test_error_messages_quote_long_values_briefly():
    with pytest.raises(UserError) as e:
        load_config(None, ["steps=[" + ", ".join(["1"] * 10_000) + "]"])
    assert "'steps' expects an integer" in str(e.value) and len(str(e.value)) < 200


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_learning_rates_are_refused(tmp_path, value):
    with pytest.raises(UserError, match="optim.lr must be a finite number"):
        tiny_config(tmp_path / "run", f"optim.lr={value}", small_motion=False)
    assert not (tmp_path / "run").exists()
