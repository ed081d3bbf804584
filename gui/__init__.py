"""The PySide6 + pyqtgraph live map window."""
