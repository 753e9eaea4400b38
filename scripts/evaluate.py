#!/usr/bin/env python
"""Same as the installed command `diffam-evaluate` (see diffam/cli/evaluate.py)."""

from diffam.cli.evaluate import main

if __name__ == "__main__":
    main()
