"""The CLKL network of Kim et al. 2021, and the one place TensorFlow is imported.

- :mod:`clkl.tf_setup`: TensorFlow with the Keras 2 API (tf-keras), selected before the import;
- :mod:`clkl.encoder`: uint8 B-mode crop -> frozen VGG19 features (the model ``encoder.tflite`` is made from);
- :mod:`clkl.head`: per-feature MinMax -> Dense(10) -> Dense(1) per output (sigmoid p_fatty, linear PDFF);
- :mod:`clkl.augment`: the paper's 39 rotation/flip variants (numpy and OpenCV only).

Both the trainer and calibration build on this package; it imports neither of them.
"""
