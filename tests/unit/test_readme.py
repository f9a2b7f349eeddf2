from services.settings import VigilSettings
from tests.support.services import REPO

README = (REPO / "README.md").read_text()


def test_readme_starts_with_the_two_commands() -> None:
    first_block = README.split("```sh", 1)[1].split("```", 1)[0]
    assert "make run" in first_block
    assert "make test" in first_block


def test_every_setting_is_documented_with_its_default() -> None:
    for name, field in VigilSettings.model_fields.items():
        row = next(
            (line for line in README.splitlines() if line.startswith(f"| `VIGIL_{name.upper()}`")),
            None,
        )
        assert row is not None, f"VIGIL_{name.upper()} is not documented"
        assert f"`{field.default}`" in row, f"VIGIL_{name.upper()}: default not documented"
