"""Measurements a sonographer can check by eye, made on the frames the pipeline files."""
