"""Bedside side of fatty-liver-edge: wire protocol, preprocessing, bundle loading and the inference server.

Nothing in this package imports TensorFlow, the trainer, calibration or the phantom: the bedside box
installs only the ``[edge]`` extra.
"""

__version__ = "0.1.0"
