"""The bedside display: a local web page that follows the runtime's results, exams and health."""
