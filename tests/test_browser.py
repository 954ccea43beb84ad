"""
The browser client in real headless Chromium (Debian's, driven by
Playwright), against the server started as users start it: twistd in local
mode on a loopback port.  Screenshots go to the test's temporary folder.
"""

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from typing import Any

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.helpers import free_port

ROOT = FilePath(__file__).parent().parent()
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]



class BrowserCase(SynchronousTestCase):
    """
    A server in a subprocess and a headless Chromium page.
    """

    def setUp(self) -> None:
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            chromium = None
        if chromium is None:
            if os.environ.get("OSSCALLBACK_REQUIRE_BROWSER"):
                raise AssertionError("Chromium and Playwright are required here")
            raise SkipTest("needs Debian's chromium and the playwright package")
        self.chromium = chromium
        self.sync_playwright = sync_playwright
        self.requests: list[str] = []

    def serve(self, *options: str) -> str:
        """
        Start the server with C{options}; its origin.
        """
        port = free_port()
        log = open(self.mktemp() + ".log", "wb")
        self.addCleanup(log.close)
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        environ = {k: v for k, v in os.environ.items() if not k.startswith("OSS_")}
        environ["PYTHONPATH"] = ROOT.path
        server = subprocess.Popen(
            [twistd, "-n", "--pidfile=", "osscallback", "--local",
             "--port", f"tcp:{port}:interface=127.0.0.1",
             "--data-dir", self.mktemp(), *options],
            env=environ, stdout=log, stderr=subprocess.STDOUT,
        )

        def stop() -> None:
            server.terminate()
            server.wait(10)

        self.addCleanup(stop)
        origin = f"http://127.0.0.1:{port}"
        for _ in range(150):
            try:
                with urllib.request.urlopen(origin + "/healthz", timeout=1):
                    return origin
            except OSError:
                time.sleep(0.1)
        raise AssertionError("the server did not start")

    def open(self, origin: str, width: int = 1000, height: int = 800) -> Any:
        """
        A page at C{origin}, recording the URLs it requests.
        """
        playwright = self.sync_playwright().start()
        self.addCleanup(playwright.stop)
        browser = playwright.chromium.launch(executable_path=self.chromium, args=CHROMIUM_FLAGS)
        self.addCleanup(browser.close)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.on("request", lambda request: self.requests.append(request.url))
        self.dialogs: list[str] = []
        page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(origin + "/")
        page.wait_for_load_state("networkidle")
        return page

    def file(self, name: str, data: bytes) -> str:
        folder = FilePath(self.mktemp())
        folder.makedirs()
        path = folder.child(name)
        path.setContent(data)
        return path.path

    def wait_for_states(self, page: Any, *states: str) -> list[Any]:
        """
        Wait until the queue's items are in C{states}, in order.
        """
        page.wait_for_function(
            "states => { const got = [...document.querySelectorAll('#queue .item')]"
            ".map(n => n.dataset.state); return JSON.stringify(got) === JSON.stringify(states); }",
            arg=list(states),
            timeout=20000,
        )
        return page.query_selector_all("#queue .item")

    def screenshot(self, page: Any, name: str) -> None:
        page.screenshot(path=os.path.abspath(self.mktemp() + f"-{name}.png"), full_page=True)


class UploadPageTests(BrowserCase):
    """
    Uploads through the page.
    """

    def test_twoFilesAtOnce(self) -> None:
        """
        Two files chosen at once both reach done with their verified
        callback answers, and appear in the recent list with a thumbnail
        for the image.
        """
        from tests.helpers import png

        page = self.open(self.serve())
        page.set_input_files("#picker", [
            self.file("cat.png", png(40, 30)),
            self.file("notes.txt", b"two files at once"),
        ])
        items = self.wait_for_states(page, "done", "done")
        for item in items:
            self.assertIn("Verified and recorded as uploads/", item.query_selector(".detail").text_content())
            self.assertEqual(
                [b.is_visible() for b in item.query_selector_all("button")], [False, False, False]
            )
        page.wait_for_function("document.querySelectorAll('#recent li').length === 2")
        names = [n.text_content() for n in page.query_selector_all("#recent .name")]
        self.assertEqual(sorted(n.rsplit(".", 1)[1] for n in names), ["png", "txt"])
        page.wait_for_function(
            "[...document.querySelectorAll('#recent img')].some(i => !i.hidden && i.naturalWidth === 40)"
        )
        self.assertIn("Done", page.text_content("#announcer"))
        self.screenshot(page, "two-files")

    def test_tooLargeNeverSent(self) -> None:
        """
        A file over the server's limit fails with its reason before any
        byte is sent, and no grant is even asked for.
        """
        page = self.open(self.serve("--max-size", "1000"))
        page.wait_for_function("document.querySelector('#limits').textContent.includes('1000 bytes')")
        page.set_input_files("#picker", self.file("big.bin", b"x" * 2000))
        (item,) = self.wait_for_states(page, "failed")
        self.assertIn("Too large", item.query_selector(".detail").text_content())
        self.assertFalse([u for u in self.requests if "/oss/" in u or "/policy" in u])

    def test_expiredGrantRefreshed(self) -> None:
        """
        When the bucket says the grant expired, the page asks for a new
        grant and the upload succeeds.
        """
        page = self.open(self.serve("--expire", "1"))
        delayed: list[str] = []

        def late(route: Any) -> None:
            if not delayed:
                delayed.append(route.request.url)
                time.sleep(2.5)  # longer than the grant lives
            route.continue_()

        page.route("**/oss/", late)
        page.set_input_files("#picker", self.file("slow.txt", b"late but fine"))
        self.wait_for_states(page, "done")
        self.assertEqual(len([u for u in self.requests if "/policy?" in u]), 2)

    def test_markupInFileName(self) -> None:
        """
        A file name full of markup is shown as text, never as markup.
        """
        name = "<img src=x onerror=alert(1)><b>bold&amp;'\"<b>.txt"
        page = self.open(self.serve())
        page.set_input_files("#picker", self.file(name, b"harmless"))
        (item,) = self.wait_for_states(page, "done")
        self.assertEqual(item.query_selector(".name").text_content(), name)
        self.assertEqual(page.query_selector_all("#queue img, #queue b"), [])
        self.assertEqual(self.dialogs, [])

    def test_callbackFailedThenConfirmed(self) -> None:
        """
        When OSS answers 203 (callback failed) the page says so and offers
        to confirm; confirming records the upload.
        """
        page = self.open(self.serve("--callback-url", "http://127.0.0.1:9/callback"))
        page.set_input_files("#picker", self.file("lost.txt", b"callback lost"))
        (item,) = self.wait_for_states(page, "failed")
        self.assertIn("Callback failed", item.query_selector(".detail").text_content())
        self.assertFalse(item.query_selector("button.retry").is_visible())
        item.query_selector("button.confirm").click()
        self.wait_for_states(page, "done")
        page.wait_for_function("document.querySelectorAll('#recent li').length === 1")

    def test_phoneWidthAndKeyboard(self) -> None:
        """
        At phone width nothing overflows sideways, and the file chooser is
        reached with the keyboard and shows a visible focus ring.
        """
        page = self.open(self.serve(), width=375, height=740)
        page.set_input_files("#picker", self.file("phone.txt", b"small screen"))
        self.wait_for_states(page, "done")
        width = page.evaluate("document.documentElement.scrollWidth")
        self.assertLessEqual(width, 375)
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.id")
        self.assertEqual(focused, "picker")
        outline = page.evaluate(
            "getComputedStyle(document.querySelector('label[for=picker]')).outlineStyle"
        )
        self.assertEqual(outline, "solid")
        self.screenshot(page, "phone")

    def test_dropAndPaste(self) -> None:
        """
        Files dropped on the drop zone, or pasted onto the page, are
        uploaded like chosen ones.
        """
        page = self.open(self.serve())
        page.evaluate(
            """() => {
                const drop = new DataTransfer();
                drop.items.add(new File(["dropped"], "dropped.txt", {type: "text/plain"}));
                document.querySelector("#dropzone").dispatchEvent(
                    new DragEvent("drop", {dataTransfer: drop, bubbles: true, cancelable: true}));
                const paste = new DataTransfer();
                paste.items.add(new File(["pasted"], "pasted.txt", {type: "text/plain"}));
                document.dispatchEvent(
                    new ClipboardEvent("paste", {clipboardData: paste, bubbles: true}));
            }"""
        )
        items = self.wait_for_states(page, "done", "done")
        self.assertEqual(
            [i.query_selector(".name").text_content() for i in items], ["dropped.txt", "pasted.txt"]
        )
