"""Sphinx configuration of the lrtransfer documentation.

Why Sphinx with autodoc, napoleon and MyST (as Optax does): the API
reference is generated from the docstrings, which are written in Google
style (``Args:``/``Returns:``, read by napoleon), while the guides stay
Markdown files (read by MyST) that render on GitHub as they are. The reference
pages in ``api/`` name every public object explicitly, grouped as a user looks
for them; ``tests/test_docs.py`` checks that none is missing.

Build (the ``docs`` extra): ``sphinx-build -W -b html docs docs/_build/html``.
"""

import pathlib
import sys

# The package is imported from the checkout, installed or not.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

project = "lrtransfer"
author = "lrtransfer authors"
copyright = "lrtransfer authors"  # pylint: disable=redefined-builtin

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
# docs/README.md says how to build; it is not a page of the site.
exclude_patterns = ["_build", "README.md"]

# Google-style docstrings only (the project's style).
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True

autodoc_default_options = {"member-order": "bysource"}
# Signatures stay readable: type hints go into the description.
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_preserve_defaults = True
# Keep the public module's name (lrtransfer.adjust, not lrtransfer._src...).
add_module_names = False

myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

html_theme = "alabaster"
html_title = "lrtransfer"
html_static_path: list[str] = []
