"""Foundation-model features by name through timm: read from the local Hugging Face cache (or a
checkpoint folder / file), normalised as the model's config says, never fetched unless allowed.
No real weights exist here: small randomly initialised ViTs saved in the hub's cache layout and
in the checkpoint layouts exercise the real loading code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from wsi_sat.errors import ModelError, WeightsError
from wsi_sat.geometry import InputTransform
from wsi_sat.models.features import VitFeatures, load_backbone
from wsi_sat.models.registry import get_spec
from wsi_sat.models.sam import Encoded

TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2, "img_size": 64}
CPU = torch.device("cpu")


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return cache


def _tiny_vit(arch: str, model_args: dict, seed: int = 0) -> torch.nn.Module:
    import timm

    from wsi_sat.models.timm_source import _layer

    torch.manual_seed(seed)
    return timm.create_model(arch, pretrained=False, num_classes=0, dynamic_img_size=True,
                             **{k: _layer(v) for k, v in model_args.items()}).eval()


def _save_hub_repo(folder: Path, arch: str, model: torch.nn.Module, model_args: dict,
                   mean=(0.7, 0.6, 0.7), std=(0.2, 0.25, 0.2)) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({
        "architecture": arch, "num_classes": 0, "model_args": model_args,
        "pretrained_cfg": {"mean": list(mean), "std": list(std), "input_size": [3, 64, 64]}}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(folder / "model.safetensors"))


def _in_cache(cache: Path, repo: str) -> Path:
    """The hub cache layout: models--ORG--NAME/{refs/main, snapshots/<commit>/...}."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text("0123abcd")
    return root / "snapshots" / "0123abcd"


def _image(h: int = 100, w: int = 70) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)


def _at_own_scale(h: int = 100, w: int = 70) -> Encoded:
    """An image the SAM encoder sees at 1 input px per pixel (a whole-slide tile)."""
    return Encoded(torch.zeros(1), (h, w), InputTransform.fit((h, w), 1024, 1.0).input_hw)


def _expected_tokens(model: torch.nn.Module, image: np.ndarray, mean, std, patch: int):
    x = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
    x = (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    h, w = image.shape[:2]
    gh, gw = -(-h // patch), -(-w // patch)
    x = torch.nn.functional.pad(x, (0, gw * patch - w, 0, gh * patch - h))
    with torch.inference_mode():
        tokens = model.forward_features(x[None])[0, model.num_prefix_tokens:]
    return tokens.reshape(gh, gw, -1).numpy()


def test_any_timm_hub_model_from_the_local_cache(hub_cache: Path) -> None:
    model = _tiny_vit("vit_small_patch16_224", TINY)
    _save_hub_repo(_in_cache(hub_cache, "lab/tiny-path"), "vit_small_patch16_224", model, TINY)
    feats = load_backbone(get_spec("timm:hf-hub:lab/tiny-path"), None, CPU, 0, 1024)
    assert isinstance(feats, VitFeatures) and feats.patch == 16
    grid = feats.grids([_image()], [_at_own_scale()])[0]
    assert grid.feats.shape == (7, 5, 32)  # ceil(100/16) x ceil(70/16): the working scale
    assert grid.patch_hw == (16.0, 16.0)
    expect = _expected_tokens(model, _image(), (0.7, 0.6, 0.7), (0.2, 0.25, 0.2), 16)
    np.testing.assert_allclose(grid.feats, expect, atol=1e-5)  # normalised as config.json says
    assert len(feats.weights_sha256) == 64


def test_a_registered_foundation_model_gets_its_model_card_layers(hub_cache: Path) -> None:
    # Virchow2's layout (register tokens, SwiGLU MLP, SiLU) at a tiny width
    spec = get_spec("virchow2")
    args = {**dict(spec.timm_kwargs), "embed_dim": 32, "depth": 1, "num_heads": 2}
    model = _tiny_vit("vit_huge_patch14_224", args)
    small = {"embed_dim": 32, "depth": 1, "num_heads": 2}  # the card's layers come from wsi-sat
    _save_hub_repo(_in_cache(hub_cache, "paige-ai/Virchow2"), "vit_huge_patch14_224", model,
                   small, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    feats = load_backbone(spec, None, CPU, 0, 1024)
    assert feats.model.num_prefix_tokens == 5 and feats.patch == 14  # class + 4 registers
    mlp = feats.model.blocks[0].mlp  # timm's SwiGLUPacked is a packed GluMlp with SiLU
    assert type(mlp).__name__ == "GluMlp" and isinstance(mlp.act, torch.nn.SiLU)
    assert feats.input_mpp == 0.5
    grid = feats.grids([_image()], [_at_own_scale()])[0]
    expect = _expected_tokens(model, _image(), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 14)
    np.testing.assert_allclose(grid.feats, expect, atol=1e-5)


def test_a_checkpoint_folder_or_file(tmp_path: Path, hub_cache: Path) -> None:
    model = _tiny_vit("vit_small_patch16_224", TINY, seed=3)
    _save_hub_repo(tmp_path / "tiny", "vit_small_patch16_224", model, TINY)
    feats = load_backbone(get_spec("timm:hf-hub:lab/absent"), tmp_path / "tiny", CPU, 0, 1024)
    sd = feats.model.state_dict()
    assert torch.equal(sd["blocks.1.attn.qkv.weight"], model.state_dict()["blocks.1.attn.qkv.weight"])
    # a bare state dict for a timm architecture (its default arguments)
    import timm

    torch.manual_seed(1)
    full = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    torch.save(full.state_dict(), tmp_path / "vit_tiny.pth")
    feats = load_backbone(get_spec("timm:vit_tiny_patch16_224"), tmp_path / "vit_tiny.pth", CPU,
                          512, 1024)
    assert feats.input_px == 512
    grid = feats.grids([_image()], [_at_own_scale()])[0]
    assert grid.feats.shape == (4, 3, 192)  # the image at half the SAM scale: 50 x 35 px


def test_absent_weights_are_one_clear_line_and_nothing_is_fetched(
        hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(huggingface_hub.file_download, "get_hf_file_metadata", no_network)
    with pytest.raises(WeightsError, match=r"not in the Hugging Face cache .* downloads are off"
                                           r".*hf download MahmoodLab/UNI.*gated"):
        load_backbone(get_spec("uni"), None, CPU, 0, 1024)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # download allowed, but the hub is offline
    with pytest.raises(WeightsError, match="the hub is offline"):
        load_backbone(get_spec("h-optimus-0"), None, CPU, 0, 1024, download=True)
    with pytest.raises(WeightsError, match="needs its weights"):
        load_backbone(get_spec("timm:vit_tiny_patch16_224"), None, CPU, 0, 1024)


def test_broken_or_foreign_weights_are_refused(tmp_path: Path, hub_cache: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architecture": "vit_small_patch16_224",
                                                    "model_args": TINY}))
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        load_backbone(get_spec("timm:hf-hub:a/b"), folder, CPU, 0, 1024)
    other = _tiny_vit("vit_small_patch16_224", {**TINY, "embed_dim": 64})
    _save_hub_repo(tmp_path / "other", "vit_small_patch16_224", other, {**TINY, "embed_dim": 64})
    (tmp_path / "other" / "config.json").write_text(json.dumps(
        {"architecture": "vit_small_patch16_224", "model_args": TINY}))
    with pytest.raises(WeightsError, match="does not fit"):  # 64-wide weights, 32-wide config
        load_backbone(get_spec("timm:hf-hub:a/b"), tmp_path / "other", CPU, 0, 1024)
    (tmp_path / "cnn").mkdir()
    torch.save({}, tmp_path / "cnn" / "pytorch_model.bin")
    (tmp_path / "cnn" / "config.json").write_text(json.dumps({"architecture": "resnet18"}))
    with pytest.raises(ModelError, match="not a ViT with patch tokens"):
        load_backbone(get_spec("timm:hf-hub:a/b"), tmp_path / "cnn", CPU, 0, 1024)


@pytest.mark.parametrize(("name", "message"), [
    ("phikon", "transformers"), ("conch", "its own package"),
    ("timm:hf-hub:noslash", "ORG/NAME"), ("mobilesam", "SAM model"), ("bogus", "unknown"),
])
def test_names_that_cannot_work_are_config_errors(name: str, message: str) -> None:
    from wsi_sat.cli.options import build_config
    from wsi_sat.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        build_config(None, (f"models.features.name={name}",), None)


def test_models_list_and_verify_show_the_cache(hub_cache: Path) -> None:
    from click.testing import CliRunner

    from wsi_sat.cli import app

    model = _tiny_vit("vit_small_patch16_224", TINY)
    _save_hub_repo(_in_cache(hub_cache, "bioptimus/H-optimus-0"), "vit_small_patch16_224",
                   model, TINY)
    listed = CliRunner().invoke(app, ["models", "list"])
    assert listed.exit_code == 0
    lines = {line.split()[0]: line for line in listed.output.splitlines() if line.strip()}
    assert "snapshots" in lines["h-optimus-0"] and "not in the Hugging Face cache" in lines["uni"]
    found = CliRunner().invoke(app, ["models", "verify", "--set",
                                     "models.features.name=h-optimus-0"])
    assert "h-optimus-0" in found.output and "found" in found.output
    missing = CliRunner().invoke(app, ["models", "verify", "--set", "models.features.name=uni"])
    assert missing.exit_code == 2
    assert missing.output.count("\n") == 1 and "hf download MahmoodLab/UNI" in missing.output
