"""Teachers write the explicit preferences (P2) and intentions (I1, I2) the data lacks.

`extractive` (default; offline, deterministic), `openai` (any OpenAI-compatible endpoint) and
`local` (a Hugging Face causal LM). See `base.Teacher` for the protocol.
"""

from instructrec.instructions.teachers.base import Teacher, TeacherAnswer, TeacherError, TeacherRequest
from instructrec.instructions.teachers.extractive import ExtractiveTeacher, leaks_title
from instructrec.instructions.teachers.local import LocalSettings, LocalTeacher
from instructrec.instructions.teachers.openai_compat import OpenAISettings, OpenAITeacher, default_cache_path

__all__ = ["ExtractiveTeacher", "LocalSettings", "LocalTeacher", "OpenAISettings", "OpenAITeacher", "Teacher",
           "TeacherAnswer", "TeacherError", "TeacherRequest", "default_cache_path", "leaks_title"]
