"""Rewrite what derives from the settings table (gallery/settings.py): the README's reference
tables and the JSON Schema shipped in the package. tests/test_settings.py fails until this has run.

    .venv/bin/python scripts/settings_docs.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gallery import schema

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
SCHEMA = REPO / "gallery" / "prompts.schema.json"

if __name__ == "__main__":
    README.write_text(schema.update_readme(README.read_text(encoding="utf-8")), encoding="utf-8")
    SCHEMA.write_text(schema.json_text(), encoding="utf-8")
    print(f"wrote {README.name} (settings tables) and {SCHEMA.relative_to(REPO)}")
