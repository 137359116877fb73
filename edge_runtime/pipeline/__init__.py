"""The stages every frame goes through, in order, and the one runner that times them and counts their drops."""
