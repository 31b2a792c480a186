"""InstructRec: recommendation as instruction following (Zhang et al., 2023, arXiv 2305.07001)."""

from instructrec.errors import InstructRecError

__version__ = "0.1.0"

__all__ = ["InstructRecError", "__version__"]
