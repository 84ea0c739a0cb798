"""BudSAM inference: predict clean-sound masks and write denoised audio.

Not implemented yet: inference lands with its own issue. Until then this script
says so and exits with status 2, rather than writing fake output. The mask ->
audio step itself is available as ``utils.audio.mask_to_audio``.
"""

from __future__ import annotations

import sys


def main() -> int:
    print(
        "budsam_infer.py: inference is not yet implemented. "
        "utils.audio.mask_to_audio(y, mask) turns a mask into denoised audio.",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
