"""Synthetic scanner screens with known PDFF: the stand-in for patient data in demos, tests and benchmarks.

Only numpy and OpenCV are used, so the phantom also runs on a bedside box to exercise the runtime.
"""
