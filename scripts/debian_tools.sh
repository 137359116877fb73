#!/bin/sh
# The Debian packages the tests and the demo run, installed where their command is missing. A tool the machine
# already has is left as it is: a Node.js from another source carries its own npm, which Debian's npm conflicts with.
# --dry-run prints the packages it would install, and installs nothing.
set -eu
# chromium + chromium-driver: the display's browser tests and the demo's screenshots of the page; systemd:
# systemd-analyze checks the unit; faketime: the wall-clock jump of `benchmarks faults`; dcmtk: storescu, a scanner
# the tests did not write, and dcmcjpeg/dcmconv, the phantom's DICOM forms; orthanc with orthanc-dicomweb: a real
# PACS, Modality Worklist and DICOMweb service for the report tests; dicom3tools: dciodvfy validates every report;
# podman, buildah, mmdebstrap: the bedside image, built with no registry (`make image`); node with npm: a
# JavaScript SR reader's test. Each pair is a command and the package that brings it.
TOOLS="chromium:chromium chromedriver:chromium-driver systemd-analyze:systemd faketime:faketime storescu:dcmtk
Orthanc:orthanc dciodvfy:dicom3tools podman:podman buildah:buildah mmdebstrap:mmdebstrap node:nodejs npm:npm"
DICOMWEB_PLUGIN=/usr/share/orthanc/plugins/libOrthancDicomWeb.so

missing=""
for pair in $TOOLS; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair#*:}"
done
[ -f "$DICOMWEB_PLUGIN" ] || missing="$missing orthanc-dicomweb"
[ -n "$missing" ] || exit 0
if [ "${1:-}" = "--dry-run" ]; then
  echo "$missing"
  exit 0
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
# shellcheck disable=SC2086  # one word per package
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1 || {
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends $missing
}
