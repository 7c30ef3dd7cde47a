"""What-if simulation on real traces (the readers so far)."""
