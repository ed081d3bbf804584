"""One module per ``diffstream`` command group; each exposes ``register(subparsers)``."""
