"""Classification data: CIFAR-10/100, MNIST, ImageFolder trees, and the embedded digits."""
from .pipeline import (
    AUGMENT,
    DATASET_NAMES,
    AugmentedImages,
    ClassificationData,
    build_loaders,
    default_root,
    load_classification_data,
    to_channels,
)
from .sources import ImageSet, load_cifar, load_digits, load_image_folder, load_mnist

__all__ = [
    "AUGMENT", "DATASET_NAMES", "AugmentedImages", "ClassificationData", "ImageSet",
    "build_loaders", "default_root", "load_classification_data", "load_cifar", "load_digits",
    "load_image_folder", "load_mnist", "to_channels",
]
