"""book/api.md documents the public API: ``companion.__all__`` and the modules it names."""

from __future__ import annotations

import re
import types
from pathlib import Path

import companion

PAGE = Path(__file__).resolve().parents[1] / "book" / "api.md"


def test_api_page_documents_every_module_of_the_public_api():
    modules = {name for name in companion.__all__
               if isinstance(getattr(companion, name), types.ModuleType)}
    page = PAGE.read_text(encoding="utf-8")
    listed = set(re.findall(r"automodule:: companion\.(\w+)", page))
    assert listed == modules, (f"modules in companion.__all__ but not on the page: "
                               f"{sorted(modules - listed)}; on the page only: {sorted(listed - modules)}")
    assert re.search(r"automodule:: companion\n\s+:members:", page), "the names of __all__"
