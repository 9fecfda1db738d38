"""The prompt gallery generator: prompts.yaml -> cached diffusers renders -> a Jekyll page."""

__version__ = "0.1.0"
