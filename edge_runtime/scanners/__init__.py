"""Scanner consoles: where each one draws its B-mode image (profiles), finding that on screen grabs and stored
images, and which profile a stored image belongs to."""
