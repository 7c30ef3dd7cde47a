"""Serving with Triton Inference Server: render, apply, control, and feed measurements back."""
