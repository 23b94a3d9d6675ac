"""``python -m fls.report``: the parameter count of every model, as a markdown table."""

from fls.report.make import parameter_table

print(parameter_table(), end="")
