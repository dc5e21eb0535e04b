from pathlib import Path

import pytest
import yaml

from wsi_sat.config import config_to_dict, default_config, load_config
from wsi_sat.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_default_yaml_mirrors_the_config_model():
    on_disk = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    assert on_disk == config_to_dict(default_config())


def test_every_field_has_a_description():
    from pydantic import BaseModel

    def walk(model):
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                yield from walk(ann)
            else:
                yield f"{model.__name__}.{name}", field.description

    missing = [name for name, desc in walk(type(default_config())) if not desc]
    assert not missing, missing


def test_set_overrides_are_typed():
    cfg = load_config(None, ["sat.matching.top_k=3", "sat.decode.mode=union", "runtime.device=cpu"])
    assert cfg.sat.matching.top_k == 3 and cfg.sat.decode.mode == "union"


def test_yaml_file_is_a_partial_tree(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("sat:\n  prompts:\n    max_positive: 5\n")
    cfg = load_config(f)
    assert cfg.sat.prompts.max_positive == 5
    assert cfg.sat.prompts.max_negative == default_config().sat.prompts.max_negative


@pytest.mark.parametrize(
    "override, words",
    [
        ("sat.nope=1", "unknown config key 'sat.nope'"),
        ("sat.matching.top_k=0", "sat.matching.top_k"),
        ("sat.decode.mode=magic", "sat.decode.mode"),
        ("no_equals_sign", "key=value"),
        ("sat=3", "is a section"),
    ],
)
def test_bad_overrides_raise_config_error(override, words):
    with pytest.raises(ConfigError) as exc:
        load_config(None, [override])
    assert words in str(exc.value)
    assert "\n" not in str(exc.value)


def test_missing_and_invalid_config_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)
