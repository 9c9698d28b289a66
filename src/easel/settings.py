"""One typed settings object; the only reader of the environment (EASEL_* variables)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "easel"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EASEL_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    catalog_file: Path | None = None  # a user TOML overlaid on the packaged catalog
    device: str | None = None  # "cuda", "cuda:1", "cpu"; default: cuda when present
    strict: bool = False  # refuse a tier whose real weights are absent instead of falling back
    fallback_max_steps: int = 4  # stand-in models are untrained: more steps buy nothing
    max_loaded_models: int = 2
    num_threads: int | None = None

    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None  # base of image URLs; default http://host:port
    image_ttl_seconds: int = 3600
    batch_size: int = 4  # most images the worker puts in one engine call

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.data_dir / 'easel.db'}"
