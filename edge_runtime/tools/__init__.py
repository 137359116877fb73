"""Commands around the box rather than in it: the frame grabber, the terminal watcher, shared command-line support."""
