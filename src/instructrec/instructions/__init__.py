"""Instructions: the format, the template library, teachers and instruction-data building."""
