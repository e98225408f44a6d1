"""`lmforge ui` in a real browser: Debian's headless chromium driven by selenium (installed by
`make install`), against a UI server on a loopback port. Screenshots of each page are saved under
the test's tmp dir (printed with -s)."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from lmforge.ui.app import create_app

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
if not (CHROMIUM.exists() and DRIVER.exists()):
    pytest.skip("chromium and chromium-driver are not installed (make install adds them with apt-get)",
                allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra has it)")
from selenium.webdriver.common.by import By  # noqa: E402 - after the skips
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,1000"]
FINISHED = "情感-tiny"  # a finished run, named in Chinese


class Server:
    """The UI in a uvicorn server on a background thread, on a free loopback port bound up front."""

    runs: Path

    def __init__(self, app):
        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.server.started, "the UI server did not start"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ui-screenshots")
    print(f"screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def ui(tiny: Path, tiny_classifier: Path, tmp_path_factory: pytest.TempPathFactory):
    """A UI over a runs folder holding one finished tiny run; the tiny data is its data root."""
    runs = tmp_path_factory.mktemp("ui-runs")
    shutil.copytree(tiny_classifier.parent, runs / FINISHED, ignore=shutil.ignore_patterns("tensorboard"))
    server = Server(create_app(runs, [str(tiny)]))
    server.runs = runs
    yield server
    server.stop()


def wait(browser, condition, timeout: float = 30):
    return WebDriverWait(browser, timeout, poll_frequency=0.2).until(lambda _: condition())


def find(browser, css: str):
    found = browser.find_elements(By.CSS_SELECTOR, css)
    return found[0] if found else None


def fill(browser, key: str, value: str) -> None:
    field = browser.find_element(By.ID, f"f-{key}")
    field.clear()
    field.send_keys(value)


def points(browser, chart: str) -> int:
    """Points drawn in a chart, read in one script call (the page redraws as lines arrive)."""
    return browser.execute_script(
        "const svg = document.querySelector(`figure[data-chart='${arguments[0]}'] svg`);"
        "return svg ? Number(svg.dataset.points) : 0;", chart)


def watch(browser, timeout: float) -> list[tuple[int, str]]:
    """(loss points drawn, status) every 0.2 s until the run page says finished: a fast box may finish
    a tiny run between two polls, so growth is judged on everything seen while it was running."""
    seen: list[tuple[int, str]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (not seen or seen[-1][1] != "finished"):
        seen.append((points(browser, "loss"), status_of(browser)))
        time.sleep(0.2)
    return seen


def status_of(browser) -> str:
    return browser.execute_script("return document.querySelector('.run-head .badge')?.textContent || '';")


@pytest.mark.slow
def test_runs_page_shows_the_finished_run(browser, ui, shots):
    browser.get(f"{ui.url}/#/runs")
    row = wait(browser, lambda: find(browser, f'tr[data-path="{FINISHED}"]'))
    assert "finished" in row.text and "classification" in row.text and "f1_macro" in row.text
    browser.save_screenshot(str(shots / "runs.png"))
    row.find_element(By.LINK_TEXT, FINISHED).click()
    wait(browser, lambda: points(browser, "loss") > 0)
    assert status_of(browser) == "finished" and find(browser, "#metrics") is not None
    browser.save_screenshot(str(shots / "run.png"))


@pytest.mark.slow
def test_a_bad_form_value_shows_the_keys_error(browser, ui, shots):
    browser.get(f"{ui.url}/#/new")
    wait(browser, lambda: find(browser, "#f-train\\.lr"))
    fill(browser, "train.lr", "fast")
    browser.find_element(By.ID, "check").click()
    field = wait(browser, lambda: find(browser, '.field.invalid[data-key="train.lr"]'))
    assert "train.lr" in field.find_element(By.CLASS_NAME, "field-error").text
    browser.save_screenshot(str(shots / "form-error.png"))


@pytest.mark.slow
def test_start_a_run_from_the_form_watch_it_and_compare(browser, ui, tiny, shots):
    browser.get(f"{ui.url}/#/new")
    wait(browser, lambda: find(browser, "#f-data\\.train"))
    fill(browser, "name", "from-the-form")
    for key, value in [("data.train", tiny / "train.csv"), ("data.test", tiny / "test.csv"), ("model.preset", "tiny"),
                       ("model.tokenizer", tiny / "tok"), ("train.epochs", "12"), ("train.batch_size", "16"),
                       ("train.lr", "2e-3"), ("train.precision", "fp32"), ("train.seed", "0"), ("train.log_every", "1")]:
        fill(browser, key, str(value))
    browser.find_element(By.ID, "check").click()
    report = wait(browser, lambda: find(browser, "#preflight .ok"))
    assert "ready to start" in report.text and "216" in report.text  # rows of train after the validation share
    assert "pos" in report.text and "neg" in report.text  # the label distribution
    browser.save_screenshot(str(shots / "preflight.png"))
    browser.find_element(By.ID, "start").click()
    wait(browser, lambda: "run?path=from-the-form" in browser.current_url)
    seen = watch(browser, timeout=300)  # the process imports torch first; then points arrive, no reload
    running = [n for n, status in seen if status == "running" and n > 0]
    assert len(set(running)) >= 2, f"the curve did not grow while the run was running: {seen[-20:]}"
    assert seen[-1][1] == "finished" and seen[-1][0] >= max(running)
    browser.save_screenshot(str(shots / "finished.png"))

    browser.get(f"{ui.url}/#/runs")
    for path in (FINISHED, "from-the-form"):
        wait(browser, lambda p=path: find(browser, f'tr[data-path="{p}"] input[type=checkbox]')).click()
    browser.find_element(By.ID, "compare-selected").click()
    metrics = wait(browser, lambda: find(browser, "#compare-metrics"))
    assert "accuracy" in metrics.text and FINISHED in metrics.text
    assert "train.log_every" in browser.find_element(By.ID, "compare-config").text
    curves = browser.find_elements(By.CSS_SELECTOR, 'figure[data-chart="loss"] polyline')
    assert len(curves) == 2  # one loss curve per run, overlaid
    browser.save_screenshot(str(shots / "compare.png"))


@pytest.mark.slow
def test_classify_a_chinese_text(browser, ui, shots):
    browser.get(f"{ui.url}/#/try?model={FINISHED}/best")
    box = wait(browser, lambda: find(browser, "#try-text"))
    box.send_keys("这个 酒店 服务 很好")
    browser.find_element(By.ID, "classify").click()
    label = wait(browser, lambda: find(browser, "#predicted-label"), timeout=60)
    assert label.text in ("pos", "neg")
    assert "pos" in browser.find_element(By.CSS_SELECTOR, "table.probs").text
    browser.save_screenshot(str(shots / "try.png"))


@pytest.mark.slow
def test_with_an_api_key_the_page_asks_for_it_once(browser, ui, shots):
    guarded = Server(create_app(ui.runs, api_key="s3cret"))
    try:
        browser.get(f"{guarded.url}/#/runs")
        prompt = wait(browser, lambda: _alert(browser))
        prompt.send_keys("s3cret")
        prompt.accept()
        wait(browser, lambda: find(browser, f'tr[data-path="{FINISHED}"]'))
        browser.get(f"{guarded.url}/#/run?path={FINISHED}")  # the key is kept for the tab: no second prompt
        wait(browser, lambda: points(browser, "loss") > 0)
        assert _alert(browser) is None
    finally:
        guarded.stop()


def _alert(browser):
    from selenium.common.exceptions import NoAlertPresentException

    try:
        alert = browser.switch_to.alert
        alert.text  # noqa: B018 - raises when no dialog is open
        return alert
    except NoAlertPresentException:
        return None
