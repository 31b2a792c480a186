"""Instructions: the format, the template library, teachers and instruction-data building.

- `schema`: aspects, `Instruction`, `Example` and their records.
- `templates`: the 39-template library (`load_templates`), validated on load.
- `render`: slot filling and `Renderer` / `render_rerank_instruction`, which other stages call to
  write one instruction at evaluation or serving time.
- `teachers`: extractive (default), openai, local.
- `builder`: `build_instructions(...)` -> sharded JSONL + stats, resumable.
"""

from instructrec.instructions.builder import BuildSettings, build_instructions
from instructrec.instructions.render import Renderer, RenderSettings, render_rerank_instruction
from instructrec.instructions.schema import (
           AnswerForm,
           Aspects,
           Example,
           Instruction,
           Intention,
           Preference,
           TaskForm,
)
from instructrec.instructions.templates import Template, TemplateError, TemplateLibrary, load_templates

__all__ = ["AnswerForm", "Aspects", "BuildSettings", "Example", "Instruction", "Intention", "Preference",
           "RenderSettings", "Renderer", "TaskForm", "Template", "TemplateError", "TemplateLibrary",
           "build_instructions", "load_templates", "render_rerank_instruction"]
