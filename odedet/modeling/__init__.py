from . import backbone  # noqa: F401  (registers backbones)
from . import roi_heads  # noqa: F401  (registers ODERes5ROIHeads)
from . import classification  # noqa: F401  (registers ImageClassifier, CIFAR/MNIST backbones)
