"""The declared contracts: bundle.json and the runtime's messages validate, grow additively, and are documented."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_runtime.schema import (
    BUNDLE_SCHEMA,
    TOPIC_HEARTBEAT,
    TOPIC_RESULT,
    BundleError,
    BundleMeta,
    ExamCalibration,
    ExamEstimate,
    ExamRecord,
    ExportSettings,
    FrameHeader,
    HeartbeatMessage,
    MessageError,
    MetricsMessage,
    ResultMessage,
    ThumbnailMessage,
    parse_message,
)

ROOT = Path(__file__).resolve().parents[1]


def _meta(**changes) -> dict:
    meta = {
        "schema": BUNDLE_SCHEMA,
        "name": "b",
        "version": "1.2.3",
        "created": "2026-01-01T00:00:00+00:00",
        "views": ["liver", "kidney_liver"],
        "input": {"shape": [224, 224, 3], "dtype": "uint8"},
        "features": {"size": 512, "dtype": "int8"},
        "outputs": {"p_fatty": {"threshold": 0.5, "meaning": "m"}, "pdff": {"unit": "%", "meaning": "m"}},
        "head_outputs": {"p_fatty": 7, "pdff": 9},
        "files": {"encoder": {"liver": "e.tflite", "kidney_liver": "e.tflite"}, "head": "h", "fidelity": "f"},
        "quantization": {
            "encoder": "int8",
            "input": {"scale": 1.0, "zero_point": 0},
            "output": {"scale": 0.1, "zero_point": -3},
            "head": "float32",
            "representative_samples": 10,
        },
        "calibration": {"subjects": 2, "subject_id_sha256": "x", "fidelity_subjects": 2, "train_subjects": 6},
        "training": {
            "run": "r",
            "weights": "none",
            "weights_id": None,
            "finetune": None,
            "augment": "light",
            "epochs": 3,
        },
        "cv_metrics": {"task": "both"},
        "sha256": {"e.tflite": "0" * 64},
    }
    meta.update(changes)
    return meta


def _read(meta: dict) -> BundleMeta:
    return BundleMeta.from_json(json.dumps(meta).encode(), Path("bundle.json"))


def test_a_bundle_that_predates_the_new_fields_still_validates() -> None:
    meta = _read(_meta())
    assert meta.export is None and meta.outputs.p_fatty.validated is None and meta.training.task is None
    assert meta.outputs.unvalidated() == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"surprise": 1}, r"surprise: Extra inputs are not permitted"),
        ({"version": "1.0"}, r"version: String should match pattern"),
        ({"views": ["kidney_liver", "liver"]}, r"views \['kidney_liver', 'liver'\], this runtime serves"),
        ({"files": {"encoder": {"liver": "e"}, "head": "h", "fidelity": "f"}}, r"no encoder file for view"),
        ({"schema": "other@9"}, r"schema 'other@9' is not"),
    ],
)
def test_bad_bundle_metadata_is_refused_naming_the_field(changes: dict, message: str) -> None:
    with pytest.raises(BundleError, match=message):
        _read(_meta(**changes))


def test_bundle_metadata_round_trips_through_the_contract() -> None:
    meta = _read(_meta(export=ExportSettings(qat=True).model_dump()))
    again = BundleMeta.from_json(meta.model_dump_json(by_alias=True).encode(), Path("x"))
    assert again == meta and again.export.qat


def test_export_settings_refuse_qat_without_int8() -> None:
    with pytest.raises(ValueError, match=r"--qat.*needs --int8"):
        ExportSettings(qat=True, int8=False)


def _result(**extra) -> bytes:
    body = {
        "session": "exam-1",
        "trigger": "liver",
        "frames": {"liver": {"seq": 1, "ts": 1.0}, "kidney_liver": {"seq": 2, "ts": 2.0}},
        "p_fatty": 0.7,
        "fatty": True,
        "threshold": 0.5,
        "pdff": 9.1,
        "model": {"name": "m", "version": "1.0.0", "sha": "abc"},
        "latency_ms": {"encode": 40.0, "end_to_end": 55.0},
        **extra,
    }
    return json.dumps(body).encode()


def test_messages_keep_fields_a_newer_runtime_adds_and_refuse_broken_ones() -> None:
    result = parse_message(TOPIC_RESULT, _result(thumbnails={"liver": "..."}))
    assert isinstance(result, ResultMessage) and result.model_extra == {"thumbnails": {"liver": "..."}}
    older = parse_message(TOPIC_RESULT, _result())  # a runtime that predates the exam object
    assert older.exam is None
    with pytest.raises(MessageError, match=r"exam\.calibrated"):
        parse_message(TOPIC_RESULT, _result(exam={"call": "fatty"}))
    with pytest.raises(MessageError, match="p_fatty"):
        parse_message(TOPIC_RESULT, _result(p_fatty=3.0))
    with pytest.raises(MessageError, match="heartbeat"):
        parse_message(TOPIC_HEARTBEAT, b"{not json")
    with pytest.raises(MessageError, match="unknown topic"):
        parse_message(b"chat", b"{}")


def test_architecture_document_names_every_contract_field() -> None:
    """docs/ARCHITECTURE.md is the living description: a field added to a contract must be documented there."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    fields = {
        "bundle.json": [f.alias or n for n, f in BundleMeta.model_fields.items()],
        "frame": list(FrameHeader.__dataclass_fields__),
        "result": list(ResultMessage.model_fields),
        "metrics": list(MetricsMessage.model_fields),
        "heartbeat": list(HeartbeatMessage.model_fields),
        "exam": list(ExamEstimate.model_fields),
        "exam record": list(ExamRecord.model_fields),
        "exam calibration": list(ExamCalibration.model_fields),
        "thumbnail": list(ThumbnailMessage.model_fields),
    }
    missing = {
        where: [f for f in names if f"`{f}" not in text and f" {f}" not in text] for where, names in fields.items()
    }
    assert not any(missing.values()), missing
