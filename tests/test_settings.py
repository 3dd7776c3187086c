"""Settings read the environment only when asked (Settings.from_env), never at import."""

from __future__ import annotations

from pathlib import Path

from hub.config import DEFAULT_POLICY_DIR, Settings


def test_access_control_settings_come_from_the_environment(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "GRIDHUB_DATA_DIR": str(tmp_path / "data"),
            "GRIDHUB_JWT_SECRET": "s" * 40,
            "GRIDHUB_JWKS_FILE": str(tmp_path / "jwks.json"),
            "GRIDHUB_JWT_ISSUER": "https://sso.example.gov.cn",
            "GRIDHUB_JWT_AUDIENCE": "gridhub-prod",
            "GRIDHUB_POLICY_DIR": str(tmp_path / "policies"),
            "GRIDHUB_POLICY_POLL_SECONDS": "0.5",
        }
    )
    assert settings.data_dir == tmp_path / "data"
    assert settings.jwt_secret == "s" * 40
    assert settings.jwks_file == tmp_path / "jwks.json"
    assert (settings.jwt_issuer, settings.jwt_audience) == (
        "https://sso.example.gov.cn",
        "gridhub-prod",
    )
    assert settings.policy_dir == tmp_path / "policies"
    assert settings.policy_poll_seconds == 0.5


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings.jwt_secret is None and settings.jwks_file is None
    assert settings.policy_dir == DEFAULT_POLICY_DIR
    assert (DEFAULT_POLICY_DIR / "policy.csv").is_file()
    assert settings.data_dir.name == ".gridhub"
