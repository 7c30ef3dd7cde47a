"""What acts on the world after a decision: Kubernetes, Triton serving, training jobs and cloud
bursts, each a package that claims its work rows from the store."""
