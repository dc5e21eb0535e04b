"""The typed configuration model: the ONLY place where defaults live.

`configs/default.yaml` mirrors these defaults (a test checks that they agree); every constant
that changes a result is a key here, so run.json records it.
"""

from __future__ import annotations

from pydantic import Field

from wsi_sat.config.base import Section
from wsi_sat.config.sat import SatConfig
from wsi_sat.config.system import ModelsConfig, RuntimeConfig
from wsi_sat.config.wsi import WsiConfig


class Config(Section):
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    sat: SatConfig = Field(default_factory=SatConfig)
    wsi: WsiConfig = Field(default_factory=WsiConfig)
