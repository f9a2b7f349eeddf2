"""Pure rule logic: rule packs, evaluation; no I/O."""
