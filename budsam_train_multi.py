"""BudSAM training: fine-tune SAM on BSD spectrogram/mask pairs under DDP.

Not implemented yet: the training loop lands with its own issue. Until then this
script says so and exits with status 2, rather than pretending to train.
"""

from __future__ import annotations

import sys


def main() -> int:
    print(
        "budsam_train_multi.py: training is not yet implemented. "
        "Generate the built-in synthetic data with: python -m utils.synthetic --out data/synthetic",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
