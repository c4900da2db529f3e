"""The repository model: stacks, dimensions, dependencies and the stack graph."""
