"""The web dashboard in a real browser (Debian's headless Chromium through chromedriver).

Against the running 3 + 3 workers: submit through the form, watch a job complete, read its results
and errors, filter, delete, and see the API's own messages. `scripts/install-chromium.sh` installs
the browser (`make test` runs it first). Screenshots go to docs/screenshots/ for the README.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp import web as aioweb
from conftest import AUTH_HEADERS, ROOT, TOKEN, Stack
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CHROMIUM = os.environ.get("JOBSTREAM_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("JOBSTREAM_CHROMEDRIVER", "/usr/bin/chromedriver")
SCREENSHOTS = ROOT / "docs" / "screenshots"
STATIC = ROOT / "jobstream" / "views" / "static"
API = "http://127.0.0.1:8080"
WIDE = (1280, 900)
PLAIN = {"Content-Type": "text/plain", **AUTH_HEADERS}


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium for the module."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    assert not missing, f"{missing} missing: run scripts/install-chromium.sh (make test does)"
    options = Options()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container: Chromium's sandbox needs user namespaces
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={WIDE[0]},{WIDE[1]}",
        "--force-device-scale-factor=1",
        "--lang=en-GB",
        "--force-prefers-reduced-motion",  # no bar animations: screenshots show settled pages
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser: WebDriver, stack: Stack) -> WebDriver:
    """The browser on a fresh dashboard (wide window; the session's API token, if any, given)."""
    browser.set_window_size(*WIDE)
    browser.get(API + "/")
    browser.execute_script("sessionStorage.clear()")
    if TOKEN:  # as if typed into the dashboard's token prompt once
        browser.execute_script("sessionStorage.setItem('jobstream.token', arguments[0])", TOKEN)
    return browser


def wait_for(driver: WebDriver, condition: Any, timeout: float = 30, what: str = "") -> Any:
    """Poll a condition against a deadline (stale elements of a re-rendered page mean "not yet")."""
    return WebDriverWait(
        driver,
        timeout,
        poll_frequency=0.1,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    ).until(condition, message=what)


def text(driver: WebDriver, selector: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, selector).text


#: Reads of a column that the page may re-render meanwhile (a job page loads its operations again
#: when its first state says the job is completed: CI once read a table replaced mid-read).
COLUMN_READS = 5


def column(driver: WebDriver, selector: str) -> list[str]:
    """The text of every element `selector` matches, read again if the page replaced them
    between finding and reading."""
    for _ in range(COLUMN_READS - 1):
        try:
            return [cell.text for cell in driver.find_elements(By.CSS_SELECTOR, selector)]
        except StaleElementReferenceException:
            continue
    return [cell.text for cell in driver.find_elements(By.CSS_SELECTOR, selector)]


def submit_through_the_form(
    driver: WebDriver, *, paste: str = "", upload: Path | None = None
) -> str:
    """Fill the submit page (pasting or uploading), send it, and return the new job's id."""
    driver.get(API + "/#/submit")
    textarea = wait_for(driver, lambda d: d.find_element(By.ID, "expressions"))
    if upload is not None:
        driver.find_element(By.ID, "expressions-file").send_keys(str(upload))
        wait_for(driver, lambda d: textarea.get_property("value"), what="file loaded")
    else:
        driver.execute_script("arguments[0].value = arguments[1]", textarea, paste)
    driver.find_element(By.ID, "submit-job").click()
    wait_for(driver, lambda d: "#/jobs/" in d.current_url, what="landing on the job's page")
    return driver.current_url.rsplit("/", 1)[-1]


def wait_until_completed(driver: WebDriver) -> WebElement:
    """The job page's progress bar, once it shows 100 % and the job completed."""
    bar = wait_for(
        driver,
        lambda d: d.find_element(
            By.CSS_SELECTOR, ".progress [role=progressbar][aria-valuenow='100']"
        ),
        timeout=60,
        what="the progress bar at 100 %",
    )
    wait_for(driver, lambda d: text(d, "#job-status") == "Completed", what="status Completed")
    return bar


def rows_by_job(driver: WebDriver) -> dict[str, str]:
    """The jobs list's rows: job id -> status, in order."""
    rows = driver.find_elements(By.CSS_SELECTOR, "#jobs-table tbody tr")
    return {row.get_attribute("data-job-id"): row.get_attribute("data-status") for row in rows}


def filter_jobs(driver: WebDriver, status: str) -> None:
    """Choose a status in the jobs list's filter ("" for all) and wait for the list it gives."""
    toolbar = wait_for(
        driver,
        lambda d: (
            d.find_element(By.ID, "jobs-toolbar").is_displayed()
            and d.find_element(By.ID, "status-filter")
        ),
        what="the status filter (shown once the API's document offers it)",
    )
    Select(toolbar).select_by_value(status)
    wait_for(
        driver,
        lambda d: (
            (f"status={status}" in d.current_url) == bool(status)
            and d.find_element(By.ID, "status-filter").get_property("value") == status
            and (rows_by_job(d) or "No job with this status." in text(d, "main"))
        ),
        what=f"the list filtered on {status or 'nothing'}",
    )


def count_in(driver: WebDriver, selector: str) -> int:
    """A totals card's number (it shows "…" while loading and "—" when unknown)."""
    return int(text(driver, selector).replace(",", ""))


def screenshot(driver: WebDriver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / name))


# --- against the running workers ------------------------------------------------------------------


def test_uploaded_sample_runs_to_100_percent_with_exact_results(page: WebDriver) -> None:
    # Given the submit page, When the seed's operations.txt is uploaded and submitted
    job_id = submit_through_the_form(page, upload=ROOT / "operations.txt")
    # Then the job's page shows it, its progress bar reaches 100 % and the job completes
    assert text(page, ".job-id") == job_id
    bar = wait_until_completed(page)
    assert text(page, "#job-percent") == "100 %"
    assert "10 succeeded, 0 failed, 0 pending" in bar.get_attribute("aria-valuetext")
    assert text(page, "#job-total") == "10"
    assert text(page, "#job-succeeded") == "10"
    assert text(page, "#job-failed") == "0"
    assert text(page, "#job-finished") != "—"
    # And its operations show the exact results, 3 / 4 + 1 being 1.75
    wait_for(page, lambda d: column(d, "#operations-table td.result")[-1] == "198", what="results")
    assert column(page, "#operations-table td.expression")[8] == "3 / 4 + 1"
    assert column(page, "#operations-table td.result") == [
        "69", "-8", "69", "-3", "-3", "-3", "-3", "69", "1.75", "198",
    ]  # fmt: skip
    page.set_window_size(WIDE[0], 1180)  # every operation in the picture
    screenshot(page, "job.png")


def test_error_sample_shows_its_operation_failed_with_the_error(page: WebDriver) -> None:
    # Given the error sample pasted into the form
    submit_through_the_form(page, paste=(ROOT / "operations-error.txt").read_text())
    wait_until_completed(page)
    # Then its one operation is shown failed, with the error where the result would be
    row = wait_for(page, lambda d: d.find_element(By.CSS_SELECTOR, "tr[data-status=failed]"))
    assert row.find_element(By.CSS_SELECTOR, ".op-failed").text == "failed"
    error = row.find_element(By.CSS_SELECTOR, "td.error-text")
    assert "expected a number" in error.text and "column 19" in error.text
    assert error.value_of_css_property("color") == "rgba(180, 35, 24, 1)"  # the error colour
    assert text(page, "#job-failed") == "1"


def test_failed_only_filter_shows_just_the_failed_operations(page: WebDriver) -> None:
    # Given a completed job with two failed operations among five
    submit_through_the_form(page, paste="1 + 1\n2 / 0\n3 * 3\n4 +\n5 - 5\n")
    wait_until_completed(page)
    wait_for(page, lambda d: len(column(d, "#operations-table tbody tr")) == 5, what="5 rows")
    # When "Failed only" is ticked
    page.find_element(By.ID, "failed-only").click()
    # Then only the failed operations are listed (the API filters them: ?status=failed)
    wait_for(
        page,
        lambda d: column(d, "#operations-table tbody td:first-child") == ["2", "4"],
        what="only operations 2 and 4",
    )
    assert column(page, "#operations-table .op") == ["failed", "failed"]
    assert "status=failed" in page.current_url
    # And unticking it brings every operation back
    page.find_element(By.ID, "failed-only").click()
    wait_for(page, lambda d: len(column(d, "#operations-table tbody tr")) == 5, what="5 rows")


def test_deleting_a_job_asks_first_then_it_is_gone(page: WebDriver) -> None:
    # Given a completed job's page
    job_id = submit_through_the_form(page, paste="7 * 6\n")
    wait_until_completed(page)
    # When delete is clicked but the confirmation is cancelled, Then nothing is deleted
    page.find_element(By.ID, "delete-job").click()
    dialog = wait_for(page, lambda d: d.find_element(By.CSS_SELECTOR, "#confirm-dialog[open]"))
    assert job_id in dialog.text and "cannot be undone" in dialog.text
    page.find_element(By.ID, "confirm-cancel").click()
    wait_for(page, lambda d: not d.find_elements(By.CSS_SELECTOR, "#confirm-dialog[open]"))
    assert (
        requests.get(f"{API}/api/jobs/{job_id}", headers=AUTH_HEADERS, timeout=10).status_code
        == 200
    )
    # When it is confirmed
    page.find_element(By.ID, "delete-job").click()
    wait_for(page, lambda d: d.find_element(By.CSS_SELECTOR, "#confirm-dialog[open]"))
    page.find_element(By.ID, "confirm-ok").click()
    # Then the jobs list says so, the job is not listed, and the API no longer knows it
    flash = wait_for(page, lambda d: d.find_element(By.CSS_SELECTOR, ".flash"))
    assert flash.text == f"Job {job_id} was deleted."
    wait_for(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#jobs-table tbody tr"))
    assert not page.find_elements(By.CSS_SELECTOR, f"tr[data-job-id='{job_id}']")
    assert (
        requests.get(f"{API}/api/jobs/{job_id}", headers=AUTH_HEADERS, timeout=10).status_code
        == 404
    )


def test_over_long_line_shows_the_api_message_next_to_the_input(page: WebDriver) -> None:
    # Given a line one character over the limit
    line = "1" * 1001
    expected = requests.post(f"{API}/api/jobs", data=line, headers=PLAIN, timeout=10).json()[
        "message"
    ]
    # When it is submitted through the form
    page.get(API + "/#/submit")
    textarea = wait_for(page, lambda d: d.find_element(By.ID, "expressions"))
    page.execute_script("arguments[0].value = arguments[1]", textarea, line)
    page.find_element(By.ID, "submit-job").click()
    # Then the API's own message is shown by the input, which is marked invalid, and nothing moved
    error = wait_for(
        page, lambda d: d.find_element(By.ID, "submit-error") if text(d, "#submit-error") else None
    )
    assert error.text == expected
    assert "1000" in error.text
    assert textarea.get_attribute("aria-invalid") == "true"
    assert "submit-error" in textarea.get_attribute("aria-describedby")
    assert page.current_url.endswith("#/submit")


def test_jobs_list_shows_jobs_newest_first_with_progress_and_totals(
    page: WebDriver, stack: Stack
) -> None:
    # Given a few jobs, the newest still running
    small = [
        requests.post(f"{API}/api/jobs", data=body, headers=PLAIN, timeout=10).json()["id"]
        for body in ("1 + 1\n2 + 2\n", "3 / 0\n4 * 4\n5 - 1\n", "6 + 6\n")
    ]
    lines = "\n".join(f"{n} * {n} + 1 / 8" for n in range(30_000))
    big = requests.post(f"{API}/api/jobs", data=lines, headers=PLAIN, timeout=30).json()["id"]
    try:
        # When the jobs list is opened
        page.get(API + "/#/")
        rows = wait_for(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#jobs-table tbody tr"))
        # Then the newest job comes first, each row with a progress bar and its counts
        listed = [row.get_attribute("data-job-id") for row in rows]
        assert listed[:4] == [big, *small[::-1]]
        assert all(row.find_elements(By.CSS_SELECTOR, "[role=progressbar]") for row in rows)
        # And the totals are there
        wait_for(page, lambda d: text(d, "#total-all") not in ("…", ""), what="totals")
        assert int(text(page, "#total-all").replace(",", "")) >= 4
        # And the big job's row moves while it runs, then completes
        row = f"tr[data-job-id='{big}']"

        def percent(driver: WebDriver) -> int:
            bar = driver.find_element(By.CSS_SELECTOR, f"{row} [role=progressbar]")
            return int(bar.get_attribute("aria-valuenow"))

        wait_for(page, lambda d: 20 <= percent(d) < 100, timeout=60, what="the big job part-way")
        # And the totals by status show numbers, which add up to no more than all jobs
        wait_for(
            page,
            lambda d: all(
                text(d, f"#total-{s}").replace(",", "").isdigit()
                for s in ("in-progress", "completed")
            ),
            what="totals by status",
        )
        assert count_in(page, "#total-in-progress") >= 1  # the big job at least
        assert count_in(page, "#total-completed") >= 2  # the small ones that completed
        screenshot(page, "jobs.png")

        # When the list is filtered to the jobs in progress
        filter_jobs(page, "in_progress")
        # Then only jobs in progress are listed, the big one among them while it runs
        wait_for(page, lambda d: big in rows_by_job(d), what="the big job listed in progress")
        assert set(rows_by_job(page).values()) == {"in_progress"}
        assert not set(small) & set(rows_by_job(page))
        # and when it completes, it leaves the list (the page refills from the API)
        wait_for(
            page,
            lambda d: big not in rows_by_job(d),
            timeout=120,
            what="the big job gone once completed",
        )
        assert set(rows_by_job(page).values()) <= {"in_progress"}

        # When the list is filtered to the completed jobs
        filter_jobs(page, "completed")
        # Then they are listed newest first, the big one first, none in progress
        wait_for(page, lambda d: list(rows_by_job(d))[:4] == [big, *small[::-1]], what="completed")
        assert set(rows_by_job(page).values()) == {"completed"}
        assert count_in(page, "#total-completed") >= 4
        row = page.find_element(By.CSS_SELECTOR, f"tr[data-job-id='{small[1]}']")
        assert "2 ok · 1 failed · 0 pending of 3" in row.text
        screenshot(page, "jobs-completed.png")
        # And "All" lists every status again
        filter_jobs(page, "")
        wait_for(page, lambda d: list(rows_by_job(d))[:4] == [big, *small[::-1]], what="all jobs")
    finally:
        requests.delete(f"{API}/api/jobs/{big}", headers=AUTH_HEADERS, timeout=30)


def test_narrow_window_stacks_the_tables_into_readable_cards(page: WebDriver) -> None:
    job_id = submit_through_the_form(page, upload=ROOT / "operations.txt")
    wait_until_completed(page)
    page.set_window_size(400, 900)
    # Each cell is labelled, and nothing is wider than the window
    cell = wait_for(page, lambda d: d.find_element(By.CSS_SELECTOR, "#operations-table td.result"))
    assert cell.get_attribute("data-label") == "Result"
    width = page.execute_script("return document.documentElement.scrollWidth")
    assert width <= page.execute_script("return window.innerWidth")
    assert text(page, ".job-id") == job_id
    page.execute_script("document.getElementById('job-created').scrollIntoView()")
    screenshot(page, "job-narrow.png")


# --- the token prompt, against a stand-in API that wants a token --------------------------------

STAND_IN_TOKEN = "s3cret-token-for-the-dashboard"


def _stand_in_api() -> aioweb.Application:
    """The dashboard's files, and an /api answering 401 (as jobstream does) without the token."""

    async def files(request: aioweb.Request) -> aioweb.StreamResponse:
        name = request.match_info.get("name", "index.html")
        return aioweb.FileResponse(STATIC / name)

    async def jobs(request: aioweb.Request) -> aioweb.StreamResponse:
        header = request.headers.get("Authorization")
        if header != f"Bearer {STAND_IN_TOKEN}":
            reason = "missing" if header is None else "not accepted"
            return aioweb.json_response(
                {"error": "unauthorized", "message": f"bearer token {reason}"}, status=401
            )
        if request.path == "/api/events":
            response = aioweb.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            await response.write(b'event: stats\ndata: {"operations_per_second": 0}\n\n')
            return response
        return aioweb.json_response({"page": 1, "size": 20, "total": 0, "items": []})

    app = aioweb.Application()
    app.router.add_get("/", files)
    app.router.add_get("/static/{name}", files)
    app.router.add_get("/api/{tail:.*}", jobs)
    return app


@pytest.fixture
def stand_in(browser: WebDriver) -> Iterator[str]:
    """The stand-in API on a free port, in a thread of its own; yields its base URL."""
    import asyncio

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    loop = asyncio.new_event_loop()
    runner = aioweb.AppRunner(_stand_in_api())
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(aioweb.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.run_until_complete(runner.cleanup())
        loop.close()


def test_token_is_asked_once_kept_for_the_session_and_a_wrong_one_gets_the_api_message(
    browser: WebDriver, stand_in: str
) -> None:
    # Given an API that wants a token and a browser session without one
    browser.get(stand_in + "/")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()
    # When the dashboard loads, Then it asks for the token, with the API's message
    dialog = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#token-dialog[open]"))
    assert "bearer token missing" in dialog.text
    # When a wrong token is given, Then it asks again with the API's answer to it
    browser.find_element(By.ID, "token-input").send_keys("wrong-token-0000000000")
    browser.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
    wait_for(browser, lambda d: "bearer token not accepted" in text(d, "#token-message"))
    # When the right one is given, Then the dashboard shows the jobs (none) and keeps the token
    browser.find_element(By.ID, "token-input").send_keys(STAND_IN_TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
    wait_for(browser, lambda d: "No jobs yet" in text(d, "main"), what="the empty list")
    assert (
        browser.execute_script("return sessionStorage.getItem('jobstream.token')") == STAND_IN_TOKEN
    )
    # And a reload in the same session does not ask again
    browser.refresh()
    wait_for(browser, lambda d: "No jobs yet" in text(d, "main"), what="the empty list again")
    assert not browser.find_elements(By.CSS_SELECTOR, "#token-dialog[open]")
