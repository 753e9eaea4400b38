#!/usr/bin/env python
"""Same as the installed command `diffam-build-template` (see diffam/cli/build_template.py)."""

from diffam.cli.build_template import main

if __name__ == "__main__":
    main()
