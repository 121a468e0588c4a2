"""A student's first hour, in a real browser: the whole loop inside JupyterLab.

`make lab` serves JupyterLab on the kit's folder.  Debian's chromium, driven
by selenium through Debian's chromedriver (nothing downloaded), then does
what a student does: opens lesson 02 and runs its first cells, opens
exercises/uts/solution in the editor, and types `sudo grader check uts` into
JupyterLab's terminal; the test reads each result from the page.  A
screenshot of each step is kept in tests/artifacts/lab-browser/ (gitignored).

`make lab` runs in namespaces of its own: a UTS namespace with a hostname
of the test's (which the lesson's first cell must show), and a mount
namespace in which /usr/local/bin is a scratch folder for the commands
`make setup` links.  JupyterLab's autosave is off: the lesson's new outputs
stay in the browser, and the test checks that the kit is unchanged.
JupyterLab listens on 127.0.0.1 only, on a free port, with a HOME of its
own; the test stops it, its kernels and its terminals.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.prefix)
ARTIFACTS = ROOT / "tests" / "artifacts" / "lab-browser"
# How long a page, a click's effect or the server's start may take: seconds
# here, minutes in the lab VM under QEMU without KVM (a deadline, not a goal).
PATIENCE = 300
CHROMEDRIVER, CHROMIUM = Path("/usr/bin/chromedriver"), Path("/usr/bin/chromium")

pytestmark = pytest.mark.skipif(not (CHROMEDRIVER.exists() and CHROMIUM.exists()),
                                reason="chromium and chromium-driver are not installed: `sudo make test` "
                                       "installs them (Debian packages)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """`make lab` on 127.0.0.1:PORT, in namespaces of its own; stopped by stop()."""

    def __init__(self, home: Path, hostname: str) -> None:
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        bindir = home / "bin"
        bindir.mkdir()
        # Test-only settings: no autosave (the lesson's new outputs stay in the
        # browser), the terminal's text in the page for a screen reader (and us).
        settings = home / "settings"
        for plugin, values in {"docmanager-extension": {"autosave": False},
                               "terminal-extension": {"screenReaderMode": True},
                               "apputils-extension/notification": {"fetchNews": "false"}}.items():
            path = settings / "@jupyterlab" / f"{plugin.split('/')[0]}" / \
                f"{plugin.split('/')[1] if '/' in plugin else 'plugin'}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        args = ("--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate "
                "--LabApp.extension_manager=readonly")
        make = ["make", "--no-print-directory", "-o", f"{os.path.relpath(VENV, ROOT)}/.installed", "lab",
                f"VENV={os.path.relpath(VENV, ROOT)}", f"BINDIR={bindir}", "JUPYTER_IP=127.0.0.1",
                f"JUPYTER_PORT={self.port}", f"JUPYTER_ARGS={args}"]
        script = (f"mount --make-rprivate / && "
                  f"mount --bind {bindir} /usr/local/bin && hostname {hostname} && exec \"$@\"")
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home),
               "LANG": "C.UTF-8", "SHELL": "/bin/bash", "JUPYTER_TOKEN": self.token,
               "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTER_CONFIG_DIR": str(home / "config"),
               "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "PYTHONDONTWRITEBYTECODE": "1"}
        self.log = (home / "lab.log").open("w+")
        self.process = subprocess.Popen(
            ["unshare", "--mount", "--uts", "--", "bash", "-c", script, "lab", *make],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        try:
            self._wait_until_up()
        except BaseException:
            self.stop()
            raise

    def api(self, path: str, method: str = "GET") -> dict | list:
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"},
                                         data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=10) as reply:
            body = reply.read()
        return json.loads(body) if body else {}

    def _wait_until_up(self, timeout: float = PATIENCE) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"make lab ended with {self.process.returncode}:\n{self.output()}")
            try:
                self.api("/api/status")
                return
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"JupyterLab did not answer within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()[-5000:]

    def stop(self) -> None:
        try:
            self.api("/api/shutdown", "POST")  # ends its kernels and terminals too
            self.process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()


@pytest.fixture
def lab():
    home = Path(tempfile.mkdtemp(prefix="nslab-lab-"))
    hostname = f"lab-{secrets.token_hex(4)}"
    try:
        server = Lab(home, hostname)
        server.hostname = hostname
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="nslab-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage", "--window-size=1400,900", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    # The driver is Debian's: selenium-manager, which would download one, never runs.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    # A page of JupyterLab takes minutes to load in the lab VM under QEMU without
    # KVM: the driver's answer may take as long (selenium's default is 120 s).
    driver.command_executor.client_config.timeout = PATIENCE
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver, condition, what: str, timeout: float = PATIENCE):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.5).until(lambda d: condition(d))
    except TimeoutException:
        shot(driver, "failed")
        raise AssertionError(f"the page never showed {what} (screenshot: {ARTIFACTS}/failed.png)") from None


def shot(driver, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def texts(where, css: str) -> list[str]:
    """The text of each element CSS in WHERE (the page or an element), shown or scrolled away."""
    from selenium.webdriver.common.by import By

    return [e.get_attribute("textContent") for e in where.find_elements(By.CSS_SELECTOR, css)]


def git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--ignored=no"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60).stdout


# A guard against a hang: the whole session took 29 min in the lab VM under QEMU
# without KVM on 7 Dec (sudo make test there), within a minute of 6 * PATIENCE.
@pytest.mark.timeout(12 * PATIENCE)
def test_a_student_runs_a_lesson_edits_a_solution_and_grades_it_in_jupyterlab(lab, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    before = git_status()

    def menu(label: str, css: str = ".lm-Menu-itemLabel"):
        return wait_for(browser, lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, css)
                                                 if e.text == label and e.is_displayed()), None),
                        f"the menu item {label}")

    # 1. JupyterLab opens on lessons/, served from the kit's folder.
    browser.get(f"{lab.url}/lab/tree/lessons?token={lab.token}")
    wait_for(browser, lambda d: "02-uts.ipynb" in texts(d, ".jp-DirListing-itemText"),
             "lessons/ in the file browser")
    shot(browser, "1-lab-opens-on-lessons")

    # 2. Lesson 02: run its first three code cells; the first shows the kernel's hostname.
    browser.get(f"{lab.url}/lab/tree/lessons/02-uts.ipynb?token={lab.token}")
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-CodeCell")) > 3,
             "lesson 02's cells")
    wait_for(browser, lambda d: any("nslab" in t for t in texts(d, ".jp-Toolbar-kernelName")),
             "the nslab kernel")
    # Until the kernel has started, JupyterLab runs no cell (Shift-Enter only moves on): on a
    # slow machine the first cells would be skipped.  The status bar says when it is idle.
    wait_for(browser, lambda d: any(t.endswith("| Idle") for t in texts(d, ".jp-StatusBar-TextItem")),
             "the kernel, idle, in the status bar")
    # The stored outputs come from the lab VM: clear them (Edit menu), so that what shows is live.
    outputs = ".jp-Notebook .jp-CodeCell .jp-OutputArea-output"
    menu("Edit", ".lm-MenuBar-itemLabel").click()
    menu("Clear Outputs of All Cells").click()
    wait_for(browser, lambda d: not texts(d, outputs), "no outputs left")
    # Shift-Enter runs a cell and moves on: past the title, through the first three code cells,
    # whose outputs name this test's hostname.
    browser.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell")[0].click()
    ActionChains(browser).send_keys(Keys.ESCAPE).perform()
    cells = browser.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell")
    code = [i for i, c in enumerate(cells) if "jp-CodeCell" in c.get_attribute("class")]
    for _ in range(code[2] + 1):
        ActionChains(browser).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
        time.sleep(0.5)
    host = lab.hostname
    wait_for(browser, lambda d: f"this kernel's hostname: {host}" in (texts(d, outputs) or [""])[0],
             f"the first cell's output: this kernel's hostname: {host}")
    wait_for(browser, lambda d: any(f"sh2# hostname\n{host}" in t for t in texts(d, outputs)),
             "the two shells of the second cell, on this host")

    def third(d) -> str:
        return "\n".join(texts(d.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-CodeCell")[2],
                               ".jp-OutputArea-output"))
    wait_for(browser, lambda d: "same UTS namespace: True" in third(d), "the third cell's answer")
    shot(browser, "2-lesson-02-first-cells")

    # 3. The exercise's solution, in JupyterLab's editor.
    browser.get(f"{lab.url}/lab/tree/exercises/uts/solution?token={lab.token}")
    wait_for(browser, lambda d: any("TODO 1" in t for t in texts(d, ".jp-FileEditor .cm-content")),
             "exercises/uts/solution in the editor")
    shot(browser, "3-solution-in-the-editor")

    # 4. A terminal in JupyterLab (File > New > Terminal): the grader, as the lesson prints it.
    menu("File", ".lm-MenuBar-itemLabel").click()
    ActionChains(browser).move_to_element(menu("New")).perform()
    menu("Terminal").click()
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".jp-Terminal .xterm-helper-textarea"),
             "a terminal")
    time.sleep(2)  # the shell's first prompt
    box = browser.find_element(By.CSS_SELECTOR, ".jp-Terminal .xterm-helper-textarea")
    box.send_keys("sudo grader check uts\n")

    def screen(d) -> str:  # xterm's rows, kept in the page for screen readers
        rows = d.find_elements(By.CSS_SELECTOR, ".jp-Terminal .xterm-accessibility-tree > div")
        return "\n".join(r.get_attribute("textContent") for r in rows)
    wait_for(browser, lambda d: "total: 0/15" in screen(d), "the grader's total in the terminal",
             timeout=180)
    shown = screen(browser)
    shot(browser, "4-grader-in-the-terminal")
    assert "uts: 0/15" in shown and "runs COMMAND" in shown and "TODO" in shown, shown
    assert "command not found" not in shown, shown
    assert git_status() == before, "the browser session changed the kit"
