"""Latency, throughput and memory suites for engineers choosing bedside hardware and settings."""
