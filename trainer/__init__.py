"""Training workstation side: manifests, feature cache, heads, cross-validation, reports, explanations, export.

Importing this package does not import TensorFlow; only the modules that build or run models do, so
``trainer validate`` stays quick and works on a machine without the [train] extra's heavy parts loaded.
"""
