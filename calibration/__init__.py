"""Calibration: the held-out calibration split, the representative dataset, int8 conversion and the
float-vs-int8 fidelity report. Imports TensorFlow (through clkl.tf_setup) only where models are converted.
"""
