"""Where frames come from: the scanner's video over ZeroMQ, and the images it stores over DICOM."""
