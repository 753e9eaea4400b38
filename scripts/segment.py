#!/usr/bin/env python
"""Same as the installed command `diffam-segment` (see diffam/cli/segment.py)."""

from diffam.cli.segment import main

if __name__ == "__main__":
    main()
