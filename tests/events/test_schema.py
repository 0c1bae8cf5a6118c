"""event-schema.json ships current, matches the Structs field for field, and every type is exercised."""

from __future__ import annotations

from importlib import resources

import msgspec
import pytest

from pybpfguard.agent.events import model
from pybpfguard.agent.events.encode import LineEncoder
from pybpfguard.agent.events.schema import SCHEMA_NAME, EventSchemaError, build_schema, load_schema, render, validate


def test_shipped_schema_file_is_the_one_built_from_the_structs() -> None:
    shipped = resources.files("pybpfguard.agent.events").joinpath(SCHEMA_NAME).read_text(encoding="utf-8")
    assert shipped == render(build_schema()), "run: python -m pybpfguard.agent.events.schema --write"


def test_schema_field_lists_equal_struct_fields_in_order() -> None:
    defs = load_schema()["$defs"]
    assert list(defs) == [cls.__struct_config__.tag for cls in model.EVENT_TYPES]
    for cls in model.EVENT_TYPES:
        body = defs[cls.__struct_config__.tag]
        assert list(body["properties"]) == ["type", *cls.__struct_fields__], cls.__name__
        assert body["properties"]["type"] == {"const": cls.__struct_config__.tag}
        assert body["additionalProperties"] is False


def test_schema_declares_every_b64_sibling_and_extension() -> None:
    block = load_schema()["$defs"]["block"]["properties"]
    for name in ("cgroup_path_b64", "comm_b64", "path_b64", "resolved_path_b64", "suppressed_during_prior_window",
                 "k8s_pod", "k8s_namespace", "k8s_service_account"):
        assert name in block
    assert "argv_b64" in load_schema()["$defs"]["exec_argv"]["properties"]


def test_every_schema_type_is_exercised_by_valid_events(sample_events, event_validator) -> None:
    out = bytearray()
    LineEncoder().extend(sample_events, out)
    seen = {obj["type"] for obj in event_validator(out)}
    assert seen == set(load_schema()["$defs"]), f"never exercised: {set(load_schema()['$defs']) - seen}"


def test_sample_events_round_trip_through_the_typed_decoder(sample_events) -> None:
    for ev in sample_events:
        assert msgspec.json.decode(msgspec.json.encode(ev), type=model.Event) == ev


@pytest.mark.parametrize(("obj", "where"), [
    ({"type": "diag", "diag_type": 4, "timestamp": 1}, "$.diag_type"),
    ({"type": "diag", "diag_type": 1, "timestamp": 1, "extra": 1}, "$"),
    ({"type": "nope"}, "$.type"),
])
def test_invalid_event_is_refused_naming_type_and_place(obj, where) -> None:
    with pytest.raises(EventSchemaError) as info:
        validate(obj)
    assert info.value.where == where


def test_null_for_an_absent_optional_field_is_refused(sample_events) -> None:
    block = next(ev for ev in sample_events if isinstance(ev, model.BlockEvent))
    with pytest.raises(EventSchemaError, match="None is not of type 'string'"):
        validate({**msgspec.to_builtins(block), "type": "block", "k8s_pod": None})


def test_event_built_without_a_required_field_refuses_to_encode() -> None:
    event = model.DiagEvent(diag_type=1)  # timestamp forgotten
    assert event.timestamp is model.REQUIRED
    with pytest.raises(TypeError, match="MissingRequiredField"):
        LineEncoder().append(event, bytearray())
    assert model.REQUIRED_FIELDS[model.DiagEvent] == ("diag_type", "timestamp")
