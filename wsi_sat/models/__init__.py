"""Models: the registry of named weights, SAM segmenters and patch-feature backbones."""
