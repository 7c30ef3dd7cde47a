"""Training, fine-tuning and batch jobs on their clusters: render, run, track, fall back."""
