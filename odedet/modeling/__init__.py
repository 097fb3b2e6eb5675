from . import backbone  # noqa: F401  (registers backbones)
from . import roi_heads  # noqa: F401  (registers ODERes5ROIHeads)
from . import depth  # noqa: F401  (registers DepthEstimator and depth heads)
from . import classification  # noqa: F401  (registers ImageClassifier, CIFAR/MNIST backbones)
