"""The typed config (schema.py and its sections) and its loader (load.py)."""

from wsi_sat.config.load import config_to_dict, config_to_yaml, default_config, load_config
from wsi_sat.config.sat import (
    INSTANCE_MODES,
    CalibrationConfig,
    DecodeConfig,
    DecodeMode,
    MatchingConfig,
    OpenSetConfig,
    PixelConfig,
    PostprocessConfig,
    PromptConfig,
    ReferenceConfig,
    SatConfig,
)
from wsi_sat.config.schema import Config
from wsi_sat.config.system import FeatureModelConfig, ModelsConfig, RuntimeConfig, SamModelConfig
from wsi_sat.config.wsi import WsiConfig

__all__ = [
    "INSTANCE_MODES", "CalibrationConfig", "Config", "DecodeConfig", "DecodeMode",
    "FeatureModelConfig",
    "MatchingConfig", "ModelsConfig", "OpenSetConfig", "PixelConfig", "PostprocessConfig", "PromptConfig",
    "ReferenceConfig", "RuntimeConfig", "SamModelConfig", "SatConfig", "WsiConfig",
    "config_to_dict", "config_to_yaml", "default_config", "load_config",
]
