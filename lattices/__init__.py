"""k2-based lattice I/O and lattice algorithms."""
