"""What the model sees and what the wire carries: the numbers every part of the product agrees on."""

from __future__ import annotations

import re
from typing import Literal

# -- what the model sees --------------------------------------------------------------------------------------------
View = Literal["liver", "kidney_liver"]
VIEWS: tuple[View, View] = ("liver", "kidney_liver")  # right intercostal liver view, liver with right renal cortex
OTHER_VIEW = "other"  # a manifest row showing neither view (air, other organs, Doppler, menus): never paired
VIEW_CLASSES = (*VIEWS, OTHER_VIEW)  # what a bundle's view gate tells apart, in its output order
AUTO_VIEW = "auto"  # a frame header's view when the source does not know it: the bundle's view gate decides
MODEL_SIZE = 224  # VGG19's input side, in pixels
INPUT_SHAPE = (MODEL_SIZE, MODEL_SIZE, 3)  # what preprocess_frame returns and every encoder takes (uint8 RGB)
FEATURE_MAP = (7, 7, 512)  # VGG19's last pooled map for INPUT_SHAPE: rows, columns, channels ('flatten' = 25 088)
FATTY_PDFF = 5.0  # MRI-PDFF (%) at and above which a liver is fatty (the paper's reference standard)
DEFINITE_ERROR = 0.05  # at most this share of definite calls may be wrong, per class, certified before any is made
P_FATTY_THRESHOLD = 0.5  # default decision threshold on the model's p_fatty
PDFF_BANDS = (("<5", 0.0, 5.0), ("5-10", 5.0, 10.0), ("10-15", 10.0, 15.0), (">=15", 15.0, 101.0))  # PDFF % grades
PDFF_BAND_NAMES = tuple(name for name, *_ in PDFF_BANDS)  # the grades from normal to severe, as tables list them
GUARD_LIMIT = 1.0  # a frame's guard score above this lies outside the training distribution (1: the threshold)
HARMONISATIONS = ("none", "sector_median")  # scanner harmonisation steps preprocess_frame knows (the last step)
Harmonisation = Literal["none", "sector_median"]
SPECKLE_STATISTICS = ("across", "down")  # edge_runtime.model.gate.speckle_texture: lag-1 speckle autocorrelation
TensorDtype = Literal["uint8", "int8", "float32"]
SEMVER_PATTERN = r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$"

# -- wire protocol v1 (ZeroMQ multipart, topic first) ---------------------------------------------------------------
PROTOCOL_VERSION = 1
TOPIC_FRAME = b"frame"
TOPIC_RESULT = b"result"
TOPIC_METRICS = b"metrics"
TOPIC_HEARTBEAT = b"heartbeat"
TOPIC_THUMBNAIL = b"thumbnail"  # optional (serve --thumbnails): what the model saw, for a display
MAX_THUMBNAIL_BYTES = 20_000  # one thumbnail's JPEG, at most
ENCODINGS = ("raw", "png", "jpeg")
SESSION_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # an opaque exam id, never a name or MRN
