"""Reading what users write: policy and inventory YAML, references between them, and the JSON Schema
and CRDs generated from the model."""
