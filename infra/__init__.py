"""Cloud GPU capacity for bursts: Pulumi components (a GPU node pool per cloud), the typed stack
configuration they take, and the Automation API wrapper that runs one stack per burst."""

from placement import extras as _extras

_extras.install()  # without Pulumi (a core install), importing it names the 'bursts' extra
