"""The I2L-MeshNet network and its building blocks."""
from .i2l import I2LMeshNet, I2LOutput, ParamRegressor, rot6d_to_matrix
from .lixel import LixelHead, soft_argmax_1d
from .pose2feat import Pose2Feat, gaussian_heatmap_3d

__all__ = ["I2LMeshNet", "I2LOutput", "ParamRegressor", "rot6d_to_matrix", "LixelHead", "soft_argmax_1d",
           "Pose2Feat", "gaussian_heatmap_3d"]
