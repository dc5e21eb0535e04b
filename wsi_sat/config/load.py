"""Loading the config: defaults, then a YAML file (a partial tree), then `--set key=value`.

Unknown keys are errors, never silently ignored; YAML is read with `safe_load` (no tags).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from wsi_sat.config.schema import Config
from wsi_sat.errors import ConfigError


def default_config() -> Config:
    return Config()


def config_to_dict(config: Config) -> dict[str, Any]:
    return config.model_dump(mode="json")


def config_to_yaml(config: Config) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)


def _merge(base: dict[str, Any], override: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            raise ConfigError(
                f"unknown config key '{dotted}'; run `wsi-sat config show` to list the keys"
            )
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{dotted}' is a section; give its sub-keys")
            out[key] = _merge(base[key], value, prefix=f"{dotted}.")
        else:
            out[key] = value
    return out


def _parse_assignment(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got '{text}'")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set expects key=value, got '{text}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return parts, value


def _nest(parts: list[str], value: Any) -> dict[str, Any]:
    tree: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        tree = {part: tree}
    return tree


def load_config(path: Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then a YAML file (partial tree), then `key=value` overrides, validated."""
    data = config_to_dict(default_config())
    if path is not None:
        if not Path(path).is_file():
            raise ConfigError(f"config file '{path}' not found; pass an existing YAML file")
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file '{path}' is not valid YAML ({exc.__class__.__name__})")
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file '{path}' must hold a mapping of sections")
        data = _merge(data, loaded)
    for text in overrides:
        parts, value = _parse_assignment(text)
        data = _merge(data, _nest(parts, value))
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"config key '{where}': {first['msg']}") from None
