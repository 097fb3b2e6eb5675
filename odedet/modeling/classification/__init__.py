"""Classification: ImageClassifier (backbone + pooled linear head), the paper's MNIST family,
CIFAR ResNets and their ODE counterparts, presets by name, and backbone export to detectors."""
from .backbones import (
    CIFARStem,
    MNISTPaperNet,
    ODEStageBlock,
    PreActBlock,
    build_cifar_resnet_backbone,
    build_mnist_paper_backbone,
    build_ode_block_from_cfg,
)
from .config import add_classification_config
from .export import export_backbone_checkpoint, map_backbone_keys
from .meta_arch import ImageClassifier
from .presets import MODEL_PRESETS, available_models, build_classifier_cfg, input_channels

__all__ = [
    "CIFARStem", "MNISTPaperNet", "ODEStageBlock", "PreActBlock", "build_cifar_resnet_backbone",
    "build_mnist_paper_backbone", "build_ode_block_from_cfg", "add_classification_config",
    "export_backbone_checkpoint", "map_backbone_keys", "ImageClassifier", "MODEL_PRESETS",
    "available_models", "build_classifier_cfg", "input_channels",
]
