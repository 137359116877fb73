"""DICOM from the scanner, the second source: the Storage SCP (listener), what a stored object becomes (store: frames
of its study's exam, with their origin and the study's attributes), how any stored image is read (images: every
transfer syntax and photometric interpretation, cine loops, dual displays), the patient and study attributes in
every character set (attributes), and the SOP classes and transfer syntaxes the node takes (sop)."""
