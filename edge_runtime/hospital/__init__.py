"""The box in the hospital's systems: an exam's answer as a DICOM Structured Report (TID 1500) in the patient's study,
the job that waits for the PACS in an on-disk queue, how a report reaches a destination, and the Modality Worklist
that links a screen-grab exam to its scheduled study."""
