"""The data layer: one clean `Dataset` from real recommendation logs."""

from instructrec.data.dataset import Dataset, Manifest
from instructrec.data.split import LeaveOneOutSplit, leave_one_out, truncate_history

__all__ = ["Dataset", "LeaveOneOutSplit", "Manifest", "leave_one_out", "truncate_history"]
