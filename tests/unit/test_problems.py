from services.ingest.entrypoints.problems import field_errors


def test_union_branch_of_what_was_sent_is_reported() -> None:
    errors = [
        {"loc": ("body", "LabResultIn"), "msg": "Input should be a valid dictionary"},
        {"loc": ("body", "list[LabResultIn]", 0, "value"), "msg": "Invalid decimal"},
    ]
    assert [e["field"] for e in field_errors(errors, body=[{}])] == ["0.value"]
    assert [e["pointer"] for e in field_errors(errors, body=[{}])] == ["/0/value"]
    assert [e["field"] for e in field_errors(errors, body={})] == ["(body)"]


def test_model_validator_steps_name_no_field() -> None:
    errors = [
        {
            "loc": ("body", "list[function-after[check(), LabResultIn]]", 0, "collected_at"),
            "msg": "Field required",
        },
        {"loc": ("body", "function-after[check(), LabResultIn]"), "msg": "Input should be a dict"},
    ]
    assert [e["field"] for e in field_errors(errors, body=[{}])] == ["0.collected_at"]
