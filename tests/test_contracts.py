"""The declared contracts: bundle.json and the runtime's messages validate, grow additively, and are documented."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge_runtime.contracts import (
    BUNDLE_SCHEMA,
    TOPIC_HEARTBEAT,
    TOPIC_RESULT,
    BundleError,
    BundleMeta,
    Count,
    MessageError,
    Reject,
    ResultMessage,
    Stage,
    parse_message,
)
from edge_runtime.contracts.schemas import CONTRACTS, json_schema
from trainer.config import ExportSettings

ROOT = Path(__file__).resolve().parents[1]


def _meta(**changes) -> dict:
    meta = {
        "schema": BUNDLE_SCHEMA,
        "name": "b",
        "version": "1.2.3",
        "created": "2026-01-01T00:00:00+00:00",
        "views": ["liver", "kidney_liver"],
        "input": {"shape": [224, 224, 3], "dtype": "uint8", "harmonisation": "sector_median"},
        "features": {"size": 512, "dtype": "int8", "pooling": "avg"},
        "outputs": {
            "p_fatty": {"threshold": 0.5, "meaning": "m", "validated": True},
            "pdff": {"unit": "%", "meaning": "m", "validated": False},
        },
        "head_outputs": {"p_fatty": 7, "pdff": 9},
        "files": {"encoder": {"liver": "e.tflite", "kidney_liver": "e.tflite"}, "head": "h", "fidelity": "f"},
        "quantization": {
            "encoder": "int8",
            "input": {"scale": 1.0, "zero_point": 0},
            "output": {"scale": 0.1, "zero_point": -3},
            "head": "float32",
            "representative_samples": 10,
        },
        "calibration": {
            "subjects": 2,
            "subject_id_sha256": "x",
            "fidelity_subjects": 2,
            "train_subjects": 6,
            "train_subject_id_sha256": "y",
        },
        "training": {
            "run": "r",
            "weights": "none",
            "weights_id": None,
            "finetune": None,
            "augment": "light",
            "appearance": "none",
            "epochs": 3,
            "task": "classify",
            "features": "float",
            "cohort": "phantom",
            "subjects": 10,
        },
        "cv_metrics": {"task": "classify"},
        "export": {"int8": True, "version": "1.2.3"},
        "exam": {},
        "scanners": {"phantom-ge": {"vendor": "GE", "screen": [1680, 1050], "crop": [10, 10, 100, 100]}},
        "sha256": {"e.tflite": "0" * 64},
    }
    meta.update(changes)
    return meta


def _read(meta: dict) -> BundleMeta:
    return BundleMeta.from_json(json.dumps(meta).encode(), Path("bundle.json"))


def test_a_complete_bundle_validates_and_says_which_outputs_are_unvalidated() -> None:
    meta = _read(_meta())
    assert meta.outputs.unvalidated() == ["pdff"] and meta.view_gate is None and meta.guard is None


@pytest.mark.parametrize("missing", ["exam", "scanners", "export", "input"])
def test_a_bundle_missing_a_part_is_refused_naming_it(missing: str) -> None:
    meta = _meta()
    del meta[missing]
    with pytest.raises(BundleError, match=rf"{missing}: Field required"):
        _read(meta)


def test_bundle_metadata_is_frozen_once_built() -> None:
    with pytest.raises(ValidationError, match="frozen"):
        _read(_meta()).name = "edited"


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
    meta = _read(_meta(export=ExportSettings(qat=True).model_dump(mode="json")))
    again = BundleMeta.from_json(meta.model_dump_json(by_alias=True).encode(), Path("x"))
    assert again == meta and again.export["qat"] is True


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
        "exam": {"call": None, "calibrated": True},
        **extra,
    }
    return json.dumps(body).encode()


def test_messages_keep_fields_a_newer_runtime_adds_and_refuse_broken_ones() -> None:
    result = parse_message(TOPIC_RESULT, _result(thumbnails={"liver": "..."}))
    without_exam = json.loads(_result())
    del without_exam["exam"]
    assert isinstance(result, ResultMessage) and result.model_extra == {"thumbnails": {"liver": "..."}}
    with pytest.raises(MessageError, match=r"exam: Field required"):
        parse_message(TOPIC_RESULT, json.dumps(without_exam).encode())
    with pytest.raises(MessageError, match=r"exam\.calibrated"):
        parse_message(TOPIC_RESULT, _result(exam={"call": "fatty"}))
    with pytest.raises(MessageError, match="p_fatty"):
        parse_message(TOPIC_RESULT, _result(p_fatty=3.0))
    with pytest.raises(MessageError, match="heartbeat"):
        parse_message(TOPIC_HEARTBEAT, b"{not json")
    with pytest.raises(MessageError, match="unknown topic"):
        parse_message(b"chat", b"{}")


# -- published schemas ----------------------------------------------------------------------------------------------
SCHEMAS = ROOT / "docs" / "schemas"


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_the_published_json_schema_is_the_models_own(name: str) -> None:
    """docs/schemas/NAME.schema.json equals model_json_schema(); regenerate with
    `python -m edge_runtime.contracts.schemas docs/schemas` after changing a contract."""
    assert json.loads((SCHEMAS / f"{name}.schema.json").read_text()) == json_schema(name)


def _object_schemas(schema: dict) -> dict[str, dict]:
    """The schema's objects by name: the root, then every $defs entry."""
    return {"(root)": schema, **schema.get("$defs", {})}


def _shape(prop: dict) -> object:
    """What a property may hold, without its words: types, enums, references, item shapes, bounds."""
    ignored = {"description", "title", "default", "examples"}
    if isinstance(prop, dict):
        return {k: _shape(v) for k, v in prop.items() if k not in ignored}
    if isinstance(prop, list):
        return [_shape(v) for v in prop]
    return prop


def additive_problems(frozen: dict, current: dict) -> list[str]:
    """How `current` breaks `frozen`: an object or field gone, a field's shape changed, or a field required that
    was not (a bundle written at the freeze would stop loading)."""
    problems, now = [], _object_schemas(current)
    for name, before in _object_schemas(frozen).items():
        after = now.get(name)
        if after is None:
            problems.append(f"{name}: removed")
            continue
        for field, shape in before.get("properties", {}).items():
            if field not in after.get("properties", {}):
                problems.append(f"{name}.{field}: removed")
            elif _shape(shape) != _shape(after["properties"][field]):
                problems.append(f"{name}.{field}: changed")
        for field in set(after.get("required", [])) - set(before.get("required", [])):
            problems.append(f"{name}.{field}: newly required")
    return problems


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_contracts_only_grow_additively_from_their_frozen_form(name: str) -> None:
    """bundle@1 and protocol v1 are frozen (docs/schemas/frozen/): fields keep their name, shape and meaning, and a
    field added later is optional."""
    frozen = json.loads((SCHEMAS / "frozen" / f"{name}.schema.json").read_text())
    assert additive_problems(frozen, json_schema(name)) == []


def test_the_additive_check_catches_a_removed_retyped_or_newly_required_field() -> None:
    frozen = {"properties": {"a": {"type": "integer"}, "b": {"type": "string"}}, "required": ["a"]}
    assert additive_problems(frozen, frozen) == []
    grown = {"properties": {**frozen["properties"], "c": {"type": "string"}}, "required": ["a"]}
    assert additive_problems(frozen, grown) == []
    broken = {"properties": {"a": {"type": "string"}, "c": {"type": "string"}}, "required": ["a", "c"]}
    assert sorted(additive_problems(frozen, broken)) == [
        "(root).a: changed",
        "(root).b: removed",
        "(root).c: newly required",
    ]


# -- names declared once --------------------------------------------------------------------------------------------
def _table_names(heading: str) -> set[str]:
    """The backticked names in the first column of the table under a heading of docs/ARCHITECTURE.md."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    section = text.split(f"\n{heading}\n", 1)[1].split("\n#", 1)[0]
    return {m for line in section.splitlines() if line.startswith("| `") for m in [line.split("`")[1]]}


@pytest.mark.parametrize(("heading", "names"), [("### Stages", Stage), ("### Reject reasons", Reject)])
def test_the_architecture_tables_list_exactly_the_declared_names(heading: str, names) -> None:
    assert _table_names(heading) == {str(n) for n in names}


def test_the_counters_table_lists_every_plain_counter_and_each_family_by_its_reasons() -> None:
    """A counter by reason is written PREFIX_<Enum> once (the Reasons table lists the enum's members)."""
    from edge_runtime.contracts.names import COUNTED_REASONS, PLAIN_COUNTERS

    families = {f"{prefix}_<{kind.__name__}>" for kind, prefix in COUNTED_REASONS}
    assert _table_names("### Counters") == set(PLAIN_COUNTERS) | families
    assert len(Count) == len(PLAIN_COUNTERS) + sum(len(kind) for kind, _ in COUNTED_REASONS)


def test_the_reasons_table_lists_every_declared_reason() -> None:
    from edge_runtime.contracts.names import COUNTED_REASONS, ExamEnd

    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    section = text.split("\n### Reasons\n", 1)[1].split("\n#", 1)[0]
    rows = {line.split("`")[1]: line.split("|")[2] for line in section.splitlines() if line.startswith("| `")}
    for kind in [k for k, _ in COUNTED_REASONS] + [ExamEnd]:
        assert kind.__name__ in rows, kind.__name__
        assert {m.split("`")[1] for m in rows[kind.__name__].split(",")} == {str(v) for v in kind}, kind.__name__
