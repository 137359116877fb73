"""The model the box serves: the verified bundle (encoder, heads, view gate, guard), its signature, its interpreters,
what it knows about its own error, and the one reference a model update swaps."""
