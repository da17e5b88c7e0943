"""BrowserML: from a Keras image classifier to fast, safe inference in users' browsers.

The Python API is what the CLI calls; import from here.
"""

from __future__ import annotations

__version__ = "0.1.0"
