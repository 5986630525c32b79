"""Axes: the math of feature axes (fit, normalise, lock, condition), fitting methods (least squares, SVM,
logistic, SeFa, GANSpace PCA), the axis-set file (store), operations on axis sets, and the shipped defaults.

It may use ``tlgan.sampling``, ``tlgan.models`` and the package helpers.
"""
