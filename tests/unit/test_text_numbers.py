from decimal import Decimal

import pytest

from shared.text_numbers import number_in_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [("7.0", (None, "7.0")), (" 7 ", (None, "7")), ("<0.5", ("<", "0.5")),
     ("≥ 60", (">=", "60")), ("≤1", ("<=", "1")), ("POS", None), ("1.2.3", None),
     ("7.0 g/dL", None), ("", None)],
)  # fmt: skip
def test_a_number_written_as_text(text: str, expected: tuple[str | None, str] | None) -> None:
    assert number_in_text(text) == (
        None if expected is None else (expected[0], Decimal(expected[1]))
    )


def test_a_number_no_payload_holds_is_a_value_error_that_does_not_quote_it() -> None:
    with pytest.raises(ValueError, match="digits") as raised:
        number_in_text("1" * 40)
    assert "1" * 40 not in str(raised.value)
