"""Config keys of the classification models, added by :func:`add_classification_config`."""
from detectron2.config import CfgNode as CN


def add_classification_config(cfg):
    """MODEL.CLASSIFIER (the ImageClassifier meta-architecture), MODEL.MNIST_NET (the ODE-Net
    paper's MNIST family) and MODEL.CIFAR_RESNET (CIFAR-scale ResNets and ODE counterparts)."""
    _C = cfg
    _C.MODEL.CLASSIFIER = CN()
    # Number of classes of the linear head (set from the dataset by tools/train_cifar.py).
    _C.MODEL.CLASSIFIER.NUM_CLASSES = 10
    # Backbone output feature the head pools; "" = the one with the largest stride.
    _C.MODEL.CLASSIFIER.IN_FEATURE = ""

    _C.MODEL.MNIST_NET = CN()
    # "residual": 6 pre-activation residual blocks (the paper's ResNet); "ode": one ODE block
    # (RK-Net with MODEL.ODE.ADJOINT False, ODE-Net with True).
    _C.MODEL.MNIST_NET.BLOCK = "residual"
    # Residual blocks of the "residual" variant (the paper: 6).
    _C.MODEL.MNIST_NET.NUM_BLOCKS = 6
    # Channels of the stem and the blocks (the paper: 64).
    _C.MODEL.MNIST_NET.WIDTH = 64
    # Normalisation of the stem, residual blocks and output: "GN" (the reference), "BN" or "".
    _C.MODEL.MNIST_NET.NORM = "GN"
    # GroupNorm groups (the reference: min(32, channels)).
    _C.MODEL.MNIST_NET.GN_GROUPS = 32

    _C.MODEL.CIFAR_RESNET = CN()
    # 6n+2: 20, 56, 110 (n basic blocks per stage). Ignored by the ODE variant's stages, which
    # are always one transition block + one ODE block.
    _C.MODEL.CIFAR_RESNET.DEPTH = 20
    # Width of the first stage; the stages have WIDTH, 2*WIDTH, 4*WIDTH channels (16/32/64).
    _C.MODEL.CIFAR_RESNET.WIDTH = 16
    # Normalisation of convolutions (detectron2 get_norm names: "BN", "GN", "FrozenBN", ...).
    _C.MODEL.CIFAR_RESNET.NORM = "BN"
    # Replace each stage's blocks after the first with one ODE block (MODEL.ODE.* settings).
    _C.MODEL.CIFAR_RESNET.ODE = False
    # Stages returned (res2 stride 1, res3 stride 2, res4 stride 4); empty = ["res4"].
    _C.MODEL.CIFAR_RESNET.OUT_FEATURES = []
    # Stages frozen from the start (0 = train everything; classification trains from scratch).
    _C.MODEL.CIFAR_RESNET.FREEZE_AT = 0
