"""Regenerate docs/configuration.md's key table and configs/default.yaml from the config model."""

from pathlib import Path

from pydantic import BaseModel

from wsi_sat.config import Config, config_to_yaml, default_config

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "configuration.md"
DEFAULT_YAML = ROOT / "configs" / "default.yaml"
START, END = "<!-- config-table -->", "<!-- /config-table -->"


def rows(model: type[BaseModel], prefix: str = ""):
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from rows(ann, f"{prefix}{name}.")
        else:
            default = field.default if field.default_factory is None else field.default_factory()
            yield f"| `{prefix}{name}` | `{'null' if default is None else default}` | {field.description} |"


def main() -> None:
    table = "\n".join(["| key | default | meaning |", "|---|---|---|", *rows(Config)])
    text = DOC.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{START}\n{table}\n{END}{tail}")
    DEFAULT_YAML.write_text(config_to_yaml(default_config()))


if __name__ == "__main__":
    main()
