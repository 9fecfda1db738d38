"""The optional upscale stage (`stage`: cached renders -> upscaled entries in the same cache) and
its model upscalers: a super-resolution network in tiles (`tiled`) and diffusers' latent upscalers
(`latent`), both built on `model_upscaler`. Imports run one way: the stage imports an upscaler
(only when a model must run: they import torch), an upscaler imports `model_upscaler`, never the
stage back.
"""
