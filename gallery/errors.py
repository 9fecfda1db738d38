"""The errors a user can meet. Each carries one message that says where and what to do."""

from __future__ import annotations

from typing import Any


class GalleryError(Exception):
    """A failure the user can act on; the CLI prints it (no traceback) and exits with `exit_code`."""

    exit_code = 1


class ConfigError(GalleryError):
    """prompts.yaml is wrong. Raised before anything is written."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ):
        self.message, self.file, self.line, self.key, self.hint = message, file, line, key, hint
        super().__init__(str(self))

    def at(self, file: str) -> ConfigError:
        return ConfigError(self.message, file=file, line=self.line, key=self.key, hint=self.hint)

    def __str__(self) -> str:
        where = self.file or "prompts.yaml"
        if self.line is not None:
            where += f":{self.line}"
        text = f"{where}: "
        if self.key:
            text += f"{self.key}: "
        text += self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class ModelLoadError(GalleryError):
    """The model named in prompts.yaml cannot be loaded (offline, wrong path, wrong kind)."""


class RenderError(GalleryError):
    """Rendering failed in a way the user must fix (e.g. out of memory at batch size 1)."""


class CacheWriteError(GalleryError):
    """The cache cannot be written (disk full, read-only, permissions); nothing half-written is left."""


class SettingError(ModelLoadError):
    """A prompts.yaml setting that only the loaded model can judge (a scheduler option, a pipeline
    class that does not fit the model). `setting` names it under render (e.g. 'pipeline',
    'scheduler_options.shift') and `picture` is the Picture it was read for: the CLI, which has the
    config, turns it into a ConfigError at the line that sets it (see Config.setting_key)."""

    # picture: a gallery.config.Picture (not imported: every module imports this one)
    def __init__(self, message: str, *, setting: str, picture: Any, hint: str | None = None):
        self.message, self.setting, self.picture, self.hint = message, setting, picture, hint
        super().__init__(message + (f"\n  hint: {hint}" if hint else ""))


class UsageError(GalleryError):
    """A command-line argument the plan cannot take (an axis it does not have, an option of none of
    its axes): exit 2, as for a mistake in prompts.yaml."""

    exit_code = 2
