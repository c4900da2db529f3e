"""Running terraform over the stack graph: plan of work, execution, outputs between stacks, report."""
