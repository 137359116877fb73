"""DICOM at the bedside: the images scanners store, as frames the pipeline reads."""
