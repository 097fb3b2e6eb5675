"""MODEL.DEPTH / MODEL.VGG / TEST.DEPTH: the depth-estimation application's config keys."""
from detectron2.config import CfgNode as CN


def add_depth_config(cfg):
    """Add the depth keys to ``cfg`` in place (called through ``odedet.add_odedet_config``)."""
    _C = cfg
    _C.MODEL.DEPTH = CN()
    # Name of the depth head in DEPTH_HEAD_REGISTRY (decodes backbone features to depth).
    _C.MODEL.DEPTH.HEAD_NAME = "DepthDecoderHead"
    # Backbone features the head decodes, any order; it sorts them by stride and uses the
    # coarsest as the decoder's start and the others as skip connections.
    _C.MODEL.DEPTH.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    # Channels of every decoder stage (3x3 convs after each upsample + skip concatenation).
    _C.MODEL.DEPTH.CONVS_DIM = 64
    # Normalisation of decoder convs: "GN", "BN", "SyncBN" or "" (detectron2's get_norm names).
    _C.MODEL.DEPTH.NORM = "GN"
    # Depth range in metres. Predictions are bounded to [MIN_DEPTH, MAX_DEPTH] (a sigmoid scaled
    # to the range); ground-truth pixels outside (MIN_DEPTH, MAX_DEPTH] are invalid in the loss.
    _C.MODEL.DEPTH.MIN_DEPTH = 1e-3
    _C.MODEL.DEPTH.MAX_DEPTH = 10.0
    # Training loss: "silog" (scale-invariant log loss, Eigen et al. 2014), "l1", or "berhu"
    # (reverse Huber, Laina et al. 2016).
    _C.MODEL.DEPTH.LOSS_TYPE = "silog"
    # lambda of the scale-invariant loss: 0 = plain log-MSE, 1 = fully scale-invariant (absolute
    # scale unconstrained). Eigen et al. train with 0.5.
    _C.MODEL.DEPTH.SI_LAMBDA = 0.5
    # berHu threshold c as a fraction of the batch's largest absolute error (Laina et al.: 0.2).
    _C.MODEL.DEPTH.BERHU_THRESHOLD = 0.2
    # Multiplier of the depth loss.
    _C.MODEL.DEPTH.LOSS_WEIGHT = 1.0

    # VGG-16 backbone (build_vgg_backbone), torchvision's layout, trained from scratch.
    _C.MODEL.VGG = CN()
    # Output channels of the five conv blocks (torchvision VGG-16: 64, 128, 256, 512, 512).
    _C.MODEL.VGG.CHANNELS = [64, 128, 256, 512, 512]
    # 3x3 convs per block (VGG-16: 2, 2, 3, 3, 3; VGG-11: 1, 1, 2, 2, 2).
    _C.MODEL.VGG.CONVS_PER_BLOCK = [2, 2, 3, 3, 3]
    # Norm after each conv: "" (the original VGG), "BN" (torchvision's vgg16_bn), "GN", ...
    _C.MODEL.VGG.NORM = ""
    # Features returned, among "vgg1".."vgg5" (block k pooled: stride 2**k).
    _C.MODEL.VGG.OUT_FEATURES = ["vgg1", "vgg2", "vgg3", "vgg4", "vgg5"]

    _C.TEST.DEPTH = CN()
    # Scale each prediction by median(gt) / median(pred) before the metrics (monocular methods
    # without absolute scale, e.g. self-supervised ones). Off for supervised models.
    _C.TEST.DEPTH.MEDIAN_SCALING = False
    # Evaluation crop: "" uses the dataset's metadata (eval_crop); or "none", "eigen_nyu",
    # "garg", "eigen_kitti" to override.
    _C.TEST.DEPTH.CROP = ""
