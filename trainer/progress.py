"""Progress for long Keras fits: one tqdm bar per fold, with the latest loss, instead of Keras' log spam."""

from __future__ import annotations

from tqdm.auto import tqdm

from clkl.tf_setup import keras


class EpochBar(keras.callbacks.Callback):
    def __init__(self, epochs: int, desc: str, enabled: bool = True):
        super().__init__()
        self.bar = tqdm(total=epochs, desc=desc, unit="epoch", disable=not enabled, leave=False)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)
        self.bar.update(1)

    def on_train_end(self, logs: dict | None = None) -> None:
        self.bar.close()
