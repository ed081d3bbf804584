"""The ``diffstream`` command line: one parser, one module per command group."""
from __future__ import annotations

import argparse
import sys

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="diffstream")
    parser.parse_args(argv)
    return 0

if __name__ == "__main__":
    sys.exit(main())
