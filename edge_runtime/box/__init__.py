"""The box looking after itself: every thread's pulse, the health it adds up to, counters and latencies, Prometheus."""
