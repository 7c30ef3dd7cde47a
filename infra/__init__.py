"""Cloud GPU capacity for bursts: Pulumi components (a GPU node pool per cloud), the typed stack
configuration they take, and the Automation API wrapper that runs one stack per burst."""
