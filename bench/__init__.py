"""convbench's benchmark: a tool of the source checkout that measures the package, not a part of it."""
