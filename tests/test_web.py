"""`flowdeblur serve`: the page in a real headless browser (Debian's Chromium, driven by
Selenium through Debian's version-matched chromedriver; nothing downloaded), and the server's
refusals over plain HTTP and a WebSocket.

One server (shipped weights, ``--max-upload-mb 2``, its temporary folders under this test's
own TMPDIR) and one browser serve the whole module. The clips are the demo's: its synthetic
blurry and sharp frames, written here as .mp4 files.

``FLOWDEBLUR_WEB_SCREENSHOT=docs/web.png`` makes the first test save the page's screenshot
there (reduced to 256 colours), as shown in the README.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import torch
from helpers import make_video, make_wav, psnr, require, smooth_frames

pytestmark = pytest.mark.slow

require("starlette")
require("uvicorn")
ws_client = require("websockets.sync.client")

MAX_MB = 2
#: A job must stop and its folder go within this many seconds of its tab closing.
CLOSE_SECONDS = 10
JOB_TIMEOUT = 300


# ----------------------------------------------------------------------------- clips


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """The demo's clip (8 blurry frames of 384x256) and its sharp frames as .mp4; a 40-frame
    clip of the same frames for a long job; a text file and a 3 MB file named .mp4; a small
    rotated clip with audio."""
    from flowdeblur.apps.demo import demo_scene
    from flowdeblur.data.synthetic import make_clip

    folder = tmp_path_factory.mktemp("clips")
    size = (256, 384)
    clip = make_clip(8, size, seed=0, config=demo_scene(size), device="cpu")
    blur = list(clip["blur"].float().clamp(0, 1))
    out = {
        "demo": make_video(folder / "demo.mp4", blur),
        "sharp": make_video(folder / "demo_sharp.mp4", list(clip["sharp"].float().clamp(0, 1))),
        "long": make_video(folder / "long.mp4", blur * 5),
        "rotated": make_video(folder / "turned.mp4", smooth_frames(5), rotation=90,
                              audio=make_wav(folder / "tone.wav", seconds=0.15)),
        "text": folder / "notes.mp4",
        "big": folder / "big.mp4",
    }
    out["text"].write_text("a shopping list, not a video\n")
    out["big"].write_bytes(np.random.default_rng(0).bytes(3 * 2**20))
    return out


# ----------------------------------------------------------------------------- the server


@dataclass
class Server:
    url: str  # http://127.0.0.1:PORT/
    process: subprocess.Popen
    tmp: Path  # the server's TMPDIR

    @property
    def port(self) -> int:
        return urlsplit(self.url).port

    def sessions(self) -> list[Path]:
        return sorted(self.tmp.glob("flowdeblur-serve-*/session-*"))

    def get(self, path: str, headers: dict | None = None) -> tuple[int, bytes]:
        """GET ``path`` as written (no normalisation of ``..``): status and body."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path, headers=headers or {})
            reply = conn.getresponse()
            return reply.status, reply.read()
        finally:
            conn.close()

    def post(self, path: str, body: bytes = b"") -> tuple[int, dict]:
        req = urllib.request.Request(self.url + path.lstrip("/"), data=body, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=60) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def health(self) -> dict:
        status, body = self.get("/api/health")
        assert status == 200
        return json.loads(body)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve-tmp")
    log = tmp_path_factory.mktemp("serve-log") / "stderr.txt"
    with open(log, "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "flowdeblur", "serve", "--port", "0", "--max-upload-mb",
             str(MAX_MB)], stdout=subprocess.PIPE, stderr=err, text=True,
            env={**os.environ, "TMPDIR": str(tmp)})
    line = process.stdout.readline()
    assert line.startswith("flowdeblur: the page is at http://127.0.0.1:"), (line, log.read_text())
    url = line.split(" at ", 1)[1].split()[0]
    yield Server(url, process, tmp)
    process.terminate()
    process.wait(timeout=60)
    # Every session's folder and the server's root folder go with it.
    assert not list(tmp.glob("flowdeblur-serve-*")), sorted(tmp.rglob("*"))
    assert "Traceback" not in log.read_text(), log.read_text()


@dataclass
class Session:
    """A session opened by a WebSocket client, as a tab opens one."""

    server: Server
    socket: object
    id: str
    folder: Path
    config: dict  # the page's choices, as the server sends them

    def start(self, options: bytes = b"{}") -> int:
        """Start a job; returns its number."""
        status, reply = self.server.post(f"/api/s/{self.id}/start", options)
        assert status == 200, reply
        return reply["number"]

    def status(self) -> dict:
        status, body = self.server.get(f"/api/s/{self.id}/status")
        assert status == 200
        return json.loads(body)

    def upload(self, path: Path, role: str = "input") -> tuple[int, dict]:
        return self.server.post(f"/api/s/{self.id}/upload?role={role}&name={path.name}"
                                "&reset=1", path.read_bytes())

    def wait_done(self, number: int) -> dict:
        """The status of job ``number`` once it has ended (as pushed to the session)."""
        deadline = time.monotonic() + JOB_TIMEOUT
        while time.monotonic() < deadline:
            status = json.loads(self.socket.recv(timeout=JOB_TIMEOUT))
            if status.get("number") == number and status["state"] in ("done", "error",
                                                                     "cancelled"):
                return status
        raise AssertionError(f"job {number} did not end")


@contextlib.contextmanager
def open_session(server: Server) -> Iterator[Session]:
    """A session for as long as the block runs; it ends when the block's WebSocket closes."""
    before = set(server.sessions())
    with ws_client.connect(server.url.replace("http://", "ws://") + "ws") as sock:
        first = json.loads(sock.recv(timeout=30))
        assert first["type"] == "session"
        (folder,) = set(server.sessions()) - before
        yield Session(server, sock, first["session"], folder, first["config"])


# ----------------------------------------------------------------------------- the browser


@dataclass
class Browser:
    driver: object
    downloads: Path
    requests: list[str] = field(default_factory=list)  # every URL the browser asked for

    def record(self) -> None:
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                self.requests.append(message["params"]["request"]["url"])
            elif message["method"] == "Network.webSocketCreated":
                self.requests.append(message["params"]["url"])


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = require("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        why = ("needs Debian's chromium and chromium-driver (apt-get install chromium "
               "chromium-driver)")
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    os.environ.setdefault("SE_AVOID_STATS", "true")  # Selenium Manager: no statistics, and
    os.environ.setdefault("SE_OFFLINE", "true")  # never a download (it is not used here)
    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--no-default-browser-check", "--disable-sync",
                 "--disable-extensions", "--disable-default-apps",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
                 "--window-size=1100,1000", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=options, service=Service(chromedriver))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(downloads)})
    driver.get("about:blank")
    driver.get_log("performance")  # what the browser did before the tests: not the page's
    yield Browser(driver, downloads)
    driver.quit()


def wait(driver, condition, timeout: float = 60, what: str = ""):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(
        lambda d: condition(d), message=what)


def element(driver, element_id: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def text(driver, element_id: str) -> str:
    return element(driver, element_id).text


def open_page(browser: Browser, server: Server) -> None:
    browser.driver.get(server.url)
    wait(browser.driver, lambda d: d.execute_script(
        "return state.session !== null && state.config !== null"), what="the page's session")


def pick(browser: Browser, element_id: str, path: Path) -> None:
    element(browser.driver, element_id).send_keys(str(path))


def read_png(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def canvas_pixels(driver) -> np.ndarray:
    """The comparison canvas as the page drew it, (H, W, 3) uint8."""
    url = driver.execute_script("return document.getElementById('compare').toDataURL()")
    return read_png(base64.b64decode(url.split(",", 1)[1]))


def frames_of(path: Path) -> tuple[torch.Tensor, object]:
    from flowdeblur.media import FrameSource

    source = FrameSource(path)
    return torch.stack([f for _, _, f in source]), source.info


def downloaded(browser: Browser, name: str) -> Path:
    path = browser.downloads / name
    wait(browser.driver, lambda d: path.is_file() and not list(
        browser.downloads.glob("*.crdownload")), what=f"the download of {name}")
    return path


def cli_deblur(src: Path, out: Path, *flags: str) -> None:
    """`flowdeblur deblur SRC -o OUT FLAGS` in its own process, as a user runs it."""
    done = subprocess.run([sys.executable, "-m", "flowdeblur", "deblur", str(src), "-o",
                           str(out), "--no-progress", *flags], capture_output=True, text=True,
                          timeout=JOB_TIMEOUT)
    assert done.returncode == 0, done.stderr


def assert_same_video(page: Path, cli: Path, *, lossless: bool) -> None:
    """Same frame count, frame rate, size, rotation, depth and streams, and the same frames:
    within 1/255 for lossless outputs. Two processes' network results can differ by a float
    rounding, which moves a quantised value by one; a lossy encoder turns that into
    differences of several code values here and there, so lossy outputs are compared by
    PSNR (two runs of `flowdeblur deblur` on the demo clip: about 49 dB)."""
    import av

    a, a_info = frames_of(page)
    b, b_info = frames_of(cli)
    assert a.shape == b.shape
    assert (a_info.fps, a_info.rotation, a_info.bits) == (b_info.fps, b_info.rotation,
                                                           b_info.bits)
    if lossless:
        assert float((a - b).abs().max()) <= 1 / 255 + 1e-6
    else:
        assert psnr(a, b) > 40
    streams = []
    for path in (page, cli):
        with av.open(str(path)) as c:
            streams.append([(s.type, s.codec_context.name) for s in c.streams])
    assert streams[0] == streams[1]


# ----------------------------------------------------------------------------- the page


def test_page_deblurs_the_demo_clip_as_the_cli_does(server, browser, clips, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import Select

    open_page(browser, server)
    d = browser.driver
    pick(browser, "input-files", clips["demo"])
    wait(d, lambda d: "8 frames of 384x256" in text(d, "input-info"), what="the clip read")
    pick(browser, "sharp-files", clips["sharp"])
    wait(d, lambda d: "8 frames of 384x256" in text(d, "sharp-info"), what="sharp frames read")
    wait(d, lambda d: "about" in text(d, "estimate"), what="a time estimate")
    Select(element(d, "opt-format")).select_by_value("lossless")  # exact pixels to compare
    element(d, "start").click()
    wait(d, lambda d: element(d, "compare").get_attribute("data-frame") == "0",
         JOB_TIMEOUT, "the result")
    assert text(d, "progress-text").startswith("done: 8 frames")
    assert not element(d, "message").is_displayed()
    mean = d.execute_script("return state.result.metrics.mean")
    assert mean["psnr_output"] > mean["psnr_input"] + 1 and mean["ssim_output"] > mean[
        "ssim_input"]
    assert "deblurred, mean" in text(d, "metrics")

    # The divider, dragged to a quarter: input pixels left of it, output pixels right of it.
    job = d.execute_script("return state.result.job")
    session = d.execute_script("return state.session")
    stills = {side: read_png(server.get(f"/files/{session}/{job}/preview/{side}/000000.png")[1])
              for side in ("input", "output")}
    canvas = element(d, "compare")
    ActionChains(d).click_and_hold(element(d, "divider")).move_by_offset(
        -canvas.size["width"] // 4, 0).release().perform()
    divider = d.execute_script("return view.divider")
    assert 0.2 < divider < 0.3
    split = round(divider * 384)
    picture = canvas_pixels(d)
    assert (picture[:, : split - 1] == stills["input"][:, : split - 1]).all()
    assert (picture[:, split + 1:] == stills["output"][:, split + 1:]).all()
    changed = np.abs(stills["input"].astype(int) - stills["output"].astype(int)).mean()
    assert changed > 2  # the two sides differ: the check above sees which is where

    # Zoomed to 200% and panned, both sides show the same place of their pictures.
    d.execute_script("const z = document.getElementById('zoom'); z.value = 200;"
                     "z.dispatchEvent(new Event('input'))")
    ActionChains(d).click_and_hold(canvas).move_by_offset(40, 20).release().perform()
    x, y, zoom = d.execute_script("return [view.x, view.y, view.zoom]")
    assert zoom == 2 and (x, y) == (96 - 20, 64 - 10)
    picture = canvas_pixels(d)
    for side, cols in (("input", slice(0, split - 1)), ("output", slice(split + 1, 384))):
        seen = stills[side][y: y + 128, x: x + 192].repeat(2, axis=0).repeat(2, axis=1)
        assert (picture[:, cols] == seen[:, cols]).all(), side

    # The scrubber shows another frame, with its flow.
    d.execute_script("const f = document.getElementById('frame'); f.value = 5;"
                     "f.dispatchEvent(new Event('input'))")
    wait(d, lambda d: canvas.get_attribute("data-frame") == "5", what="frame 6")
    flow = element(d, "flow")
    wait(d, lambda d: flow.get_attribute("src").endswith("/flow/000005.png")
         and d.execute_script("return arguments[0].naturalWidth", flow) == 384,
         what="the flow of frame 6")
    assert "frame 6" in text(d, "metrics")

    # The picture for the README: 100%, the divider in the middle, the whole page.
    d.execute_script("const z = document.getElementById('zoom'); z.value = 100;"
                     "z.dispatchEvent(new Event('input')); view.divider = 0.5; draw()")
    d.set_window_size(1100, d.execute_script("return document.body.scrollHeight") + 140)
    screenshot = tmp_path / "page.png"
    d.save_screenshot(str(screenshot))
    d.set_window_size(1100, 1000)
    if os.environ.get("FLOWDEBLUR_WEB_SCREENSHOT"):
        _save_for_docs(screenshot, Path(os.environ["FLOWDEBLUR_WEB_SCREENSHOT"]))

    # The downloads: the video equals `flowdeblur deblur`'s; input | output beside it.
    element(d, "download-output").click()
    page_video = downloaded(browser, "demo_deblurred.mkv")
    cli_deblur(clips["demo"], tmp_path / "cli.mkv", "--lossless")
    assert_same_video(page_video, tmp_path / "cli.mkv", lossless=True)
    element(d, "download-side").click()
    side, info = frames_of(downloaded(browser, "demo_side_by_side.mkv"))
    assert side.shape == (8, 3, 256, 768)
    browser.record()


def _save_for_docs(screenshot: Path, target: Path) -> None:
    from PIL import Image

    image = Image.open(screenshot).convert("RGB").quantize(256, dither=Image.Dither.NONE)
    image.save(target, optimize=True)
    assert target.stat().st_size < 300_000


def test_an_unreadable_upload_gets_one_message_and_the_server_goes_on(server, browser, clips):
    open_page(browser, server)
    d = browser.driver
    pick(browser, "input-files", clips["text"])
    message = element(d, "message")
    wait(d, lambda d: message.is_displayed(), what="the message")
    assert message.text.startswith("cannot open video notes.mp4: not a readable video file")
    assert "\n" not in message.text and "Traceback" not in message.text
    assert element(d, "start").get_attribute("disabled") is not None
    assert server.health()["ok"]
    pick(browser, "input-files", clips["demo"])  # the same page goes on working
    wait(d, lambda d: "8 frames of 384x256" in text(d, "input-info"), what="the clip read")
    assert not message.is_displayed()
    browser.record()


def test_an_upload_over_the_limit_is_refused_with_a_message(server, browser, clips):
    open_page(browser, server)
    d = browser.driver
    pick(browser, "input-files", clips["big"])
    message = element(d, "message")
    wait(d, lambda d: message.is_displayed(), what="the message")
    assert f"big.mp4: the upload is over the {MAX_MB} MB limit" in message.text
    browser.record()

    # The server refuses it too, whether the size is declared or only found while reading.
    with open_session(server) as session:
        big = clips["big"].read_bytes()
        for chunked in (False, True):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            conn.request("POST", f"/api/s/{session.id}/upload?role=input&name=big.mp4",
                         body=iter([big]) if chunked else big,
                         encode_chunked=chunked)
            reply = conn.getresponse()
            assert reply.status == 413
            assert f"over the {MAX_MB} MB limit" in json.loads(reply.read())["error"]
            conn.close()
        assert not any((session.folder / "input").iterdir())


def test_closing_the_tab_stops_the_job_and_removes_its_folder(server, browser, clips):
    from selenium.webdriver.support.ui import Select

    d = browser.driver
    first = d.current_window_handle
    d.switch_to.new_window("tab")
    open_page(browser, server)
    before = set(server.sessions())
    pick(browser, "input-files", clips["long"])
    wait(d, lambda d: "40 frames" in text(d, "input-info"), what="the clip read")
    Select(element(d, "opt-ensemble")).select_by_value("8")
    wait(d, lambda d: "for 40 frames" in text(d, "estimate"), what="a time estimate")
    folder = next(p for p in server.sessions() if (p / "input" / "long.mp4").is_file()
                  and p in before)
    element(d, "start").click()
    wait(d, lambda d: text(d, "progress-text").startswith("deblurring: ")
         and not text(d, "progress-text").startswith("deblurring: 0 "), JOB_TIMEOUT,
         "the job running")
    assert server.health()["running"]
    browser.record()
    d.close()
    closed = time.monotonic()
    d.switch_to.window(first)
    while time.monotonic() - closed < CLOSE_SECONDS:
        health = server.health()
        if not health["running"] and not folder.exists():
            break
        time.sleep(0.2)
    assert not server.health()["running"] and not folder.exists()


def test_every_request_of_the_page_goes_to_the_server_on_127_0_0_1(server, browser, clips):
    open_page(browser, server)
    pick(browser, "input-files", clips["demo"])
    wait(browser.driver, lambda d: "8 frames" in text(d, "input-info"), what="the clip read")
    browser.record()
    network = [u for u in browser.requests if urlsplit(u).scheme in ("http", "https", "ws",
                                                                      "wss", "ftp")]
    assert f"ws://127.0.0.1:{server.port}/ws" in network
    assert any("/files/" in u for u in network)  # the test above loaded stills
    strays = [u for u in network if urlsplit(u).netloc != f"127.0.0.1:{server.port}"]
    assert not strays
    others = {urlsplit(u).scheme for u in browser.requests} - {"http", "ws", "data", "blob"}
    assert others <= {"chrome", "about"}, others  # the browser's own pages, never the network


# ----------------------------------------------------------------------------- the server


def test_the_file_route_serves_only_the_sessions_own_files(server, clips):
    with open_session(server) as a, open_session(server) as b:
        assert a.upload(clips["demo"])[0] == 200
        assert b.upload(clips["sharp"])[0] == 200
        status, body = server.get(f"/files/{a.id}/input/demo.mp4")
        assert status == 200 and body == clips["demo"].read_bytes()
        secret = server.tmp / "secret.txt"
        secret.write_text("not for the page")
        (a.folder / "input" / "link.txt").symlink_to(secret)
        (a.folder / "input" / ".hidden.tmp").write_text("a writer's temporary")
        refused = [
            f"/files/{a.id}/../../secret.txt", f"/files/{a.id}/..%2F..%2Fsecret.txt",
            f"/files/{a.id}/%2Fetc%2Fpasswd", f"/files/{a.id}//etc/passwd",
            f"/files/{a.id}/input/link.txt", f"/files/{a.id}/input/.hidden.tmp",
            f"/files/{a.id}/input", f"/files/{a.id}/../{b.folder.name}/input/demo_sharp.mp4",
            f"/files/{a.id}/..%2F{b.folder.name}%2Finput%2Fdemo_sharp.mp4",
            "/files/not-a-session/input/demo.mp4", f"/files/{a.id}/{secret}",
        ]
        for path in refused:
            status, body = server.get(path)
            assert status in (404, 400), path
            assert b"not for the page" not in body and b"root:" not in body, path
        secret.unlink()
    assert not a.folder.exists() and not b.folder.exists()  # gone with their sockets


def test_a_rotated_clip_with_audio_downloads_as_the_cli_writes_it(server, clips, tmp_path):
    with open_session(server) as session:
        assert session.upload(clips["rotated"])[0] == 200
        status, probe = server.post(f"/api/s/{session.id}/probe?role=input")
        assert status == 200 and (probe["info"]["width"], probe["info"]["height"]) == (48, 64)
        for fmt, name, flags in (("lossless", "cli.mkv", ["--lossless"]),
                                 ("video", "cli.mp4", [])):
            done = session.wait_done(session.start(json.dumps({"format": fmt}).encode()))
            assert done["state"] == "done", done["message"]
            result = done["result"]
            page = tmp_path / f"page{Path(name).suffix}"
            page.write_bytes(server.get(f"/files/{session.id}/{result['output']}"
                                        "?download=1")[1])
            cli_deblur(clips["rotated"], tmp_path / name, *flags)
            assert_same_video(page, tmp_path / name, lossless=fmt == "lossless")
        still = read_png(server.get(f"/files/{session.id}/{result['job']}/preview/output/"
                                    "000000.png")[1])
        assert still.shape == (64, 48, 3)  # upright, as a player shows it

        # PNG frames: a zip of one PNG per frame.
        done = session.wait_done(session.start(b'{"format": "png", "ensemble": 2}'))
        assert done["state"] == "done", done["message"]
        data = server.get(f"/files/{session.id}/{done['result']['output']}?download=1")[1]
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            assert len([n for n in z.namelist() if n.endswith(".png")]) == 5

        # A bad option is said, and nothing starts.
        status, reply = server.post(f"/api/s/{session.id}/start", b'{"ensemble": 3}')
        assert status == 400 and "ensemble" in reply["error"]


def test_jobs_wait_their_turn_and_cancel_stops_a_running_one(server, clips):
    with open_session(server) as a, open_session(server) as b:
        assert a.upload(clips["long"])[0] == 200 and b.upload(clips["demo"])[0] == 200
        for s in (a, b):
            assert server.post(f"/api/s/{s.id}/probe?role=input")[0] == 200
        first = a.start(b'{"ensemble": 8}')
        deadline = time.monotonic() + JOB_TIMEOUT
        while a.status()["state"] != "running" or a.status()["done"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        second = b.start()
        queued = b.status()
        assert queued["state"] == "queued" and queued["ahead"] == 1
        status, reply = server.post(f"/api/s/{a.id}/cancel")
        assert status == 200
        assert a.wait_done(first)["state"] == "cancelled"
        assert not (a.folder / "job1").exists()
        done = b.wait_done(second)
        assert done["state"] == "done" and done["result"]["frames"] == 8


def test_int8_is_offered_and_runs_only_where_deblur_can_run_it(server, clips):
    from flowdeblur.apps.web.options import int8_refusal

    refusal = int8_refusal("auto")  # the server's device
    with open_session(server) as session:
        assert ("int8" in session.config["precision"]["choices"]) == (refusal is None)
        assert session.upload(clips["rotated"])[0] == 200
        assert server.post(f"/api/s/{session.id}/probe?role=input")[0] == 200
        if refusal is not None:
            assert server.post(f"/api/s/{session.id}/start", b'{"precision": "int8"}') == (
                400, {"error": refusal})
            return
        done = session.wait_done(session.start(b'{"precision": "int8"}'))
        assert done["state"] == "done", done["message"]
        assert done["result"]["frames"] == 5


def test_without_the_int8_extra_the_page_offers_no_int8(monkeypatch):
    from flowdeblur.apps.web import options
    from flowdeblur.errors import UserError

    def missing():
        raise UserError("precision int8 needs torchao: pip install 'flowdeblur[int8]'")

    monkeypatch.setattr(options, "torchao_modules", missing)
    assert options.page_config("cpu")["precision"]["choices"] == ["auto", "fp32", "bf16",
                                                                  "fp16"]
    with pytest.raises(UserError, match=r"flowdeblur\[int8\]"):
        options.job_options({"precision": "int8"}, device="cpu")
    assert options.job_options({"precision": "fp32"}, device="cpu").deblur["precision"] == "fp32"


def test_images_make_a_video_at_the_chosen_frame_rate(server, tmp_path):
    from flowdeblur.media import write_image

    with open_session(server) as session:
        for i, frame in enumerate(smooth_frames(3)):
            write_image(tmp_path / f"f{i + 1}.png", frame)
            reset = "&reset=1" if i == 0 else ""
            status, _ = server.post(f"/api/s/{session.id}/upload?role=input&name=f{i + 1}.png"
                                    f"{reset}", (tmp_path / f"f{i + 1}.png").read_bytes())
            assert status == 200
        status, probe = server.post(f"/api/s/{session.id}/probe?role=input")
        assert status == 200 and probe["info"]["kind"] == "images"
        done = session.wait_done(session.start(b'{"fps": 12}'))
        assert done["state"] == "done", done["message"]
        assert done["result"]["output"].endswith("/frames_deblurred.mp4")
        video = tmp_path / "out.mp4"
        video.write_bytes(server.get(f"/files/{session.id}/{done['result']['output']}")[1])
        frames, info = frames_of(video)
        assert len(frames) == 3 and info.fps == 12


def test_other_sites_get_no_session_and_no_answer(server):
    host = f"127.0.0.1:{server.port}"
    assert server.get("/api/health", {"Host": host})[0] == 200
    assert server.get("/api/health", {"Host": f"localhost:{server.port}"})[0] == 200
    # A name some site made point at 127.0.0.1 (DNS rebinding) gets nothing.
    assert server.get("/", {"Host": f"rebound.example:{server.port}"})[0] == 403
    # A page of another site may not open a session.
    with pytest.raises(Exception, match="403"):
        with ws_client.connect(f"ws://{host}/ws", origin="http://elsewhere.example"):
            pass


# ----------------------------------------------------------------------------- the command


def _serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flowdeblur", "serve", *args],
                          capture_output=True, text=True, timeout=120)


def test_a_taken_port_exits_2_with_one_line():
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _serve("--port", str(port))
        assert done.returncode == 2
        assert done.stderr.splitlines() == [
            f"flowdeblur: error: cannot listen on 127.0.0.1:{port}: the port is in use "
            "(choose another with --port)"]
        # Any address but the loopback is warned about first: there is no authentication.
        done = _serve("--host", "0.0.0.0", "--port", str(port))
        assert done.returncode == 2
        warning, error = done.stderr.splitlines()
        assert warning.startswith("flowdeblur: warning: listening on 0.0.0.0")
        assert "no authentication" in warning and "the port is in use" in error


def test_without_the_ui_extra_serve_says_what_to_install(monkeypatch, capsys):
    from flowdeblur.cli import main

    for name in list(sys.modules):
        if name.startswith(("flowdeblur.apps.web.", "starlette", "uvicorn")):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "starlette", None)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flowdeblur: error: the web page needs the [ui] extra")
    assert 'pip install "flowdeblur[ui]"' in err and len(err.splitlines()) == 1
