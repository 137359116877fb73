"""The coded concepts of the bedside's report, declared once. Standard codes where they exist (SNOMED CT, DICOM,
UCUM); where none does, private codes of this product's scheme ``99FLE`` (a ``99`` prefix marks a private coding
scheme, PS3.3 8.2), each documented here and in docs/ARCHITECTURE.md."""

from __future__ import annotations

from pydicom.sr.coding import Code

from edge_runtime.contracts import Change, NoCall

PRIVATE_SCHEME = "99FLE"

LIVER = Code("10200004", "SCT", "Liver")
STEATOSIS_OF_LIVER = Code("197321007", "SCT", "Steatosis of liver")
ULTRASONOGRAPHY_OF_ABDOMEN = Code("45036003", "SCT", "Ultrasonography of abdomen")
PRESENT = Code("52101004", "SCT", "Present")
ABSENT = Code("272519000", "SCT", "Absent")
INDETERMINATE = Code("82334004", "SCT", "Indeterminate")
FAT_FRACTION = Code("129100", "DCM", "Fat fraction")
PERCENT = Code("%", "UCUM", "Percent")
NO_UNITS = Code("1", "UCUM", "no units")

# Private concepts: what no standard names.
P_FATTY = Code("FLE020", PRIVATE_SCHEME, "Probability that MRI-PDFF >= 5 %")
FAT_FRACTION_LOWER = Code("FLE010", PRIVATE_SCHEME, "Fat fraction interval lower limit")
FAT_FRACTION_UPPER = Code("FLE011", PRIVATE_SCHEME, "Fat fraction interval upper limit")
INTERVAL_COVERAGE = Code("FLE012", PRIVATE_SCHEME, "Fat fraction interval coverage")
IMAGE_PAIRS = Code("FLE022", PRIVATE_SCHEME, "Image pairs combined")
WHY_INDETERMINATE = Code("FLE030", PRIVATE_SCHEME, "Why indeterminate")
CANNOT_TELL = Code("FLE031", PRIVATE_SCHEME, "The model cannot tell at the stated coverage")
DISCORDANT = Code("FLE032", PRIVATE_SCHEME, "The call and the fat fraction interval disagree")
OUTSIDE_TRAINING = Code("FLE033", PRIVATE_SCHEME, "Images outside the model's training distribution")
NO_ANSWER = Code("FLE034", PRIVATE_SCHEME, "Too few liver and kidney-liver image pairs")
CANNOT_CERTIFY = Code("FLE035", PRIVATE_SCHEME, "The model's calibration cannot certify a definite call")
DEFINITE_ERROR = Code("FLE023", PRIVATE_SCHEME, "Certified error of definite calls")
DEFINITE_SUBJECTS = Code("FLE025", PRIVATE_SCHEME, "Calibration subjects of the certification")
KIDNEY = Code("64033007", "SCT", "Kidney")
HEPATORENAL_INDEX = Code("FLE040", PRIVATE_SCHEME, "Hepatorenal index")
HEPATORENAL_INDEX_LOWER = Code("FLE041", PRIVATE_SCHEME, "Hepatorenal index 95 % interval lower limit")
HEPATORENAL_INDEX_UPPER = Code("FLE042", PRIVATE_SCHEME, "Hepatorenal index 95 % interval upper limit")
HEPATORENAL_FRAMES = Code("FLE043", PRIVATE_SCHEME, "Kidney-liver frames measured")
MEAN_ECHO = Code("FLE044", PRIVATE_SCHEME, "Mean echo level (displayed grey)")
REPEAT_ERROR = Code("FLE045", PRIVATE_SCHEME, "Fat fraction repeat standard error, log(1 + PDFF)")
CHANGE = Code("FLE050", PRIVATE_SCHEME, "Change in fat fraction since the prior report")
CHANGE_LOWER = Code("FLE051", PRIVATE_SCHEME, "Change in fat fraction 90 % interval lower limit")
CHANGE_UPPER = Code("FLE052", PRIVATE_SCHEME, "Change in fat fraction 90 % interval upper limit")
CHANGE_SINCE_PRIOR = Code("FLE053", PRIVATE_SCHEME, "Change since the prior report")
PRIOR_REPORT = Code("FLE059", PRIVATE_SCHEME, "Prior report compared")
FOLLOW_UP_SAID = Code("FLE060", PRIVATE_SCHEME, "Follow-up statement")

CALLS = {"fatty": PRESENT, "normal": ABSENT, "indeterminate": INDETERMINATE}


WHY: dict[NoCall, Code] = {
    NoCall.CANNOT_TELL: CANNOT_TELL,
    NoCall.CANNOT_CERTIFY: CANNOT_CERTIFY,
    NoCall.NOT_CALIBRATED: CANNOT_TELL,
    NoCall.DISCORDANT: DISCORDANT,
    NoCall.OUTSIDE_TRAINING: OUTSIDE_TRAINING,
    NoCall.COLLECTING: NO_ANSWER,
    NoCall.SETTLING: NO_ANSWER,
}


def why_code(why: NoCall | str | None) -> Code:
    """The coded reason an exam gives no definite call (no reason at all: too few pairs for an answer)."""
    return WHY[NoCall(why)] if why else NO_ANSWER


CHANGES: dict[Change, Code] = {
    Change.DECREASED: Code("FLE054", PRIVATE_SCHEME, "Decreased beyond the two exams' repeat error"),
    Change.INCREASED: Code("FLE055", PRIVATE_SCHEME, "Increased beyond the two exams' repeat error"),
    Change.NO_CHANGE: Code("FLE056", PRIVATE_SCHEME, "No change beyond what the two measurements can resolve"),
    Change.NOT_COMPARABLE: Code("FLE057", PRIVATE_SCHEME, "Not comparable with the prior report"),
    Change.NO_PRIOR: Code("FLE058", PRIVATE_SCHEME, "Prior report not available"),
}


def why_of(code_value: str | None) -> NoCall | None:
    """The declared reason behind a report's coded one (the first that codes to it), None for none."""
    return next((why for why, code in WHY.items() if code.value == code_value), None) if code_value else None
