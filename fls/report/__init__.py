"""Reading the runs of a sweep, aggregating them into tables and figures, writing the report (task=report)."""
