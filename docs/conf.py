"""Sphinx configuration of the neurobank documentation (built with -W in the tests)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "neurobank"
author = "neurobank developers"
copyright = "neurobank developers"  # noqa: A001 - Sphinx's name
extensions = ["sphinx.ext.autodoc"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
exclude_patterns = ["_build"]
html_theme = "alabaster"
