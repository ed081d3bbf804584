"""GUI tests; a package so that its conftest does not displace tests/conftest.py as the module ``conftest``."""
