"""Where results and ended exams go: the results socket and thumbnails, the audit log, the PACS report queue."""
