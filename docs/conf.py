"""Sphinx configuration for crashdb's documentation (Markdown pages through MyST)."""

project = "crashdb"
author = "the crashdb developers"
extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
html_theme = "alabaster"
