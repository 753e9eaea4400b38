#!/usr/bin/env python
"""Same as the installed command `diffam-make-centroids` (see diffam/cli/make_centroids.py)."""

from diffam.cli.make_centroids import main

if __name__ == "__main__":
    main()
