"""Filter and score plugins, one per module; `registry` lists them in the order they run."""
