"""The bedside page in a real headless Chromium, while phantom frames flow through `serve`.

The README's test command installs Debian's chromium and chromium-driver, so this runs in CI. Checked: each
session's call, PDFF and thumbnails appear; the page updates within 1 s of a new result; it says STALE within
3 s of stopping the runtime; it recovers when the runtime restarts, and after the browser reloads; each card states
the exam's hepatorenal index (or why there is none) and draws its regions only on the frame they were measured on.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import zmq
from helpers import Source, breathed, phantom_screens, send_until_encoded, start_server, wait_for
from selenium.webdriver.common.by import By

from edge_runtime.display.service import DisplayServer, Listen

pytestmark = pytest.mark.slow


CARDS_JS = """
return Array.from(document.querySelectorAll('.card')).map((card) => ({
  session: card.dataset.session,
  call: card.querySelector('.call').innerText,
  call_fits: card.querySelector('.call').scrollWidth <= card.querySelector('.call').clientWidth
    && card.querySelector('.call').getBoundingClientRect().right <= card.getBoundingClientRect().right,
  numbers: card.querySelector('.numbers').innerText,
  reason: card.querySelector('.reason').innerText,
  hri: card.querySelector('.hri').innerText,
  regions: card.querySelectorAll('.thumbs svg.regions polygon').length,
  thumbs_loaded: Array.from(card.querySelectorAll('.thumbs img'))
    .filter((i) => i.complete && i.naturalWidth > 0).length,
}));
"""


def _cards(browser) -> dict[str, dict]:
    """Every card's text, read in one script call (the page re-renders while Selenium looks)."""
    return {card["session"]: card for card in browser.execute_script(CARDS_JS)}


def _stale(browser) -> bool:
    return browser.find_element(By.ID, "stale").is_displayed()


def _exam(server, source, screens, session: str, subject: int, pairs: int, first: int = 0) -> None:
    for k in range(first, first + pairs):  # live frames: the same screen again would be a repeat, never paired
        for view in ("liver", "kidney_liver"):
            scanner, image = screens[(subject, view)]
            send_until_encoded(server, source, session, view, scanner, breathed(image, k))


def test_the_page_follows_live_exams_goes_stale_and_recovers(bundle_dir: Path, tmp_path: Path, browser) -> None:
    screens = phantom_screens(2)
    ctx = zmq.Context()
    source = Source(ctx)
    server = start_server(bundle_dir, source.endpoint, tmp_path, thumbnails={"enabled": True})
    display = DisplayServer(server.results_endpoint, Listen("127.0.0.1", 0), token=None).start()
    try:
        browser.get(display.url)
        assert wait_for(lambda: not _stale(browser), timeout=5), "a live runtime must not look stale"
        assert "No active exams" in browser.find_element(By.ID, "sessions").text
        browser.save_screenshot(str(tmp_path / "no-sessions.png"))

        _exam(server, source, screens, "exam-a", 0, 7)
        _exam(server, source, screens, "exam-b", 1, 7)
        assert wait_for(lambda: set(_cards(browser)) == {"exam-a", "exam-b"}, timeout=5)
        cards = _cards(browser)
        for card in cards.values():
            # the exam call, or (before the exam answer has held for 2 s) the latest pair's call, marked as such
            assert card["call"].upper() in ("FATTY", "NORMAL", "INDETERMINATE", "PAIR: FATTY", "PAIR: NORMAL"), card
            assert "PDFF" in card["numbers"] and "%" in card["numbers"]
        assert wait_for(lambda: all(c["thumbs_loaded"] == 2 for c in _cards(browser).values()), timeout=5)
        for card in _cards(browser).values():  # the exam's HRI, or why not; regions only on their own frame, both
            assert card["hri"].startswith(("liver/cortex", "HRI not measurable")), card
            assert card["regions"] in (0, 2), card

        before = _cards(browser)["exam-a"]["reason"]
        published = server.stats.counters["results_published"]
        _exam(server, source, screens, "exam-a", 0, 1, first=7)
        assert wait_for(lambda: server.stats.counters["results_published"] > published, timeout=5)
        landed = time.monotonic()
        assert wait_for(lambda: _cards(browser)["exam-a"]["reason"] != before, timeout=3, step=0.02)
        assert time.monotonic() - landed <= 1.0, "the page must show a new result within 1 s"
        browser.save_screenshot(str(tmp_path / "live.png"))

        server.stop()
        stopped = time.monotonic()
        assert wait_for(lambda: _stale(browser), timeout=4, step=0.05)
        assert time.monotonic() - stopped <= 3.0, "the page must say STALE within 3 s of losing the runtime"
        browser.save_screenshot(str(tmp_path / "stale.png"))

        server = start_server(bundle_dir, source.endpoint, tmp_path, transport={"results": server.results_endpoint})
        assert wait_for(lambda: not _stale(browser), timeout=10), "the page recovers when the runtime restarts"
        browser.refresh()  # a browser reconnecting mid-stream gets the exams back
        assert wait_for(lambda: {"exam-a", "exam-b"} <= set(_cards(browser)), timeout=5)
    finally:
        display.stop()
        server.stop()
        source.close()
        ctx.destroy(linger=0)


def test_beyond_localhost_the_browser_gets_401_without_the_token(browser) -> None:
    display = DisplayServer("tcp://127.0.0.1:5999", Listen("0.0.0.0", 0), token="a-long-enough-test-token").start()
    try:
        port = display.server.servers[0].sockets[0].getsockname()[1]
        browser.delete_all_cookies()
        browser.get(f"http://127.0.0.1:{port}/")
        assert "401" in browser.find_element(By.TAG_NAME, "body").text
        browser.get(f"http://127.0.0.1:{port}/?token=a-long-enough-test-token")
        assert wait_for(lambda: "Research use, not a medical device" in browser.find_element(By.ID, "banner").text)
        assert browser.execute_script("return getComputedStyle(document.body).backgroundColor") != "rgba(0, 0, 0, 0)"
    finally:
        display.stop()


def test_the_page_draws_only_what_passes_the_runtimes_schemas(browser) -> None:
    """A message that breaks its JSON Schema (docs/schemas) is skipped and counted on the page, never drawn; an
    indeterminate exam says so with its class set; the stage names the page shows are the result's own, in the
    runtime's declared order."""
    from edge_runtime.contracts import (
        BoxHealth,
        ExamEstimate,
        ExamFollowUp,
        FollowUp,
        FrameRef,
        HeartbeatMessage,
        ModelInfo,
        PacsStatus,
        PartHealth,
        PriorReport,
        QuarantinedReport,
        ResultMessage,
        Stage,
    )

    display = DisplayServer("tcp://127.0.0.1:5998", Listen("127.0.0.1", 0), token=None).start()
    model = ModelInfo(name="m", version="1.0.0", sha="0" * 16)
    exam = ExamEstimate(call="normal", p_fatty=0.2, pdff=3.0, n_pairs=5, calibrated=True)
    frames = {"liver": FrameRef(seq=1, ts=time.time()), "kidney_liver": FrameRef(seq=2, ts=time.time())}
    latency = {str(stage): 1.0 for stage in Stage}
    common = {"trigger": "liver", "frames": frames, "fatty": False, "threshold": 0.5, "pdff": 3.0, "model": model}
    good = ResultMessage(session="good", p_fatty=0.2, latency_ms=latency, exam=exam, **common)
    unsure_exam = exam.model_copy(
        update={"call": "indeterminate", "reason": "the model cannot tell at 95 %", "class_set": ["fatty", "normal"]}
    )
    unsure_exam = unsure_exam.model_copy(update={"pdff_interval": (1.5, 8.0), "pdff_coverage": 0.9})
    unsure = ResultMessage(session="unsure", p_fatty=0.6, latency_ms=latency, exam=unsure_exam, **common)
    broken = ResultMessage.model_construct(session="broken", p_fatty=7.0, latency_ms=latency, exam=exam, **common)
    try:
        display.state.apply(good)
        display.state.apply(unsure)
        display.state.apply(broken)  # bypasses validation, as a foreign or corrupted feed would
        set_aside = QuarantinedReport(sop_instance_uid="2.25.9", session="1.2.3", reason="StudyDate is no date")
        prior = PriorReport(sop_instance_uid="2.25.7", study_instance_uid="2.25.6", date="2026-01-05", call="fatty",
                            pdff=21.0, pdff_interval=(15.0, 28.0), model="m 1.0.0", lineage="m")  # fmt: skip
        change = FollowUp(statement="decreased", reason="decreased: -12.0 pp (-15.1 to -8.6)", date="2026-05-05",
                          prior=prior, history=[prior], change=-12.0, change_interval=(-15.1, -8.6))  # fmt: skip
        followed = ExamFollowUp(session="1.2.4", report="2.25.8", at=time.time(), ended=time.time(), pdff=9.0,
                                pdff_interval=(6.0, 13.0), followup=change)  # fmt: skip
        pacs = PacsStatus(quarantined=1, quarantine=[set_aside], followups=[followed])
        failing = PartHealth(kind="service", errors=2, last_error="RuntimeError: the builder")
        health = BoxHealth(healthy=True, parts={"reports": failing})
        said = {"sessions": 2, "pending": 0, "calibrated": True, "validation": "phantom"}
        beat = HeartbeatMessage(ts=time.time(), uptime_s=5, model=model, pacs=pacs, health=health, **said)
        display.state.apply(beat)
        browser.get(display.url)
        assert wait_for(lambda: "good" in _cards(browser), timeout=10)
        assert "broken" not in _cards(browser)
        card = _cards(browser)["unsure"]  # an honest "cannot tell" reads as such, never as a call
        assert card["call"] == "INDETERMINATE" and "fatty or normal" in card["numbers"]
        for width in (1920, 1280, 700, 420):  # four cards of 460 px, two, one, a phone: every verdict in its card
            browser.set_window_size(width, 1080)
            assert all(c["call_fits"] for c in _cards(browser).values()), f"a verdict overflows its card at {width} px"
        assert "90 % of patients like this one" in card["numbers"]
        alert = browser.find_element(By.ID, "pacs-alert").text
        assert "1 REPORT(S) SET ASIDE" in alert and "StudyDate is no date" in alert and "1.2.3" in alert
        assert "reports 2 (RuntimeError: the builder)" in browser.find_element(By.ID, "parts").text
        follow = browser.find_element(By.CSS_SELECTOR, "#followups .followup")  # the change and the visits drawn
        assert "decreased: -12.0 pp" in follow.text and "2026-01-05" in follow.text and "2026-05-05" in follow.text
        assert len(follow.find_elements(By.CSS_SELECTOR, "svg circle")) == 2
        skipped = browser.find_element(By.ID, "skipped").text
        assert "skipped" in skipped and "p_fatty" in skipped
        shown = browser.find_element(By.CSS_SELECTOR, ".card .latency").text
        assert shown.index("queue") < shown.index("gate") < shown.index("pair") < shown.index("end to end")
    finally:
        browser.set_window_size(1920, 1080)
        display.stop()
