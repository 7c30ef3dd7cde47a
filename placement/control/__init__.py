"""The control plane's state and transitions: the per-process runtime, submission, the workload
lifecycle and requeue, principals and tokens, and the GitOps policy reload."""
