"""The web page's numbers against a real kithd holding many contacts (issue 14): the server time of
the first contact-list page (Server-Timing: the first request, made 3 s after kithd started
as a person would — KITH_BENCH_SETTLE=0 for none — and the median of 20 more), the
page's weight without images (HTML + CSS + JS), and search as you type end to end in headless
Chromium (keystroke → list replaced, median over queries). Prints one JSON object.

Usage: python bench_web.py BIN_DIR DATA_DIR   (DATA_DIR: an initialized node, e.g. the one
`kith-bench cli --contacts 100000 --dir DATA_DIR` builds); scripts/test-web --bench DATA_DIR.
"""
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

BIN, DATA = sys.argv[1], sys.argv[2]


def get(address, path, cookie=None):
    c = http.client.HTTPConnection(address, timeout=60)
    c.request("GET", path, headers={"Cookie": cookie} if cookie else {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r, body


def main():
    for f in ("kithd.port", "kithd.api"):
        try:
            os.remove(os.path.join(DATA, f))
        except FileNotFoundError:
            pass
    log = open(os.path.join(DATA, "bench-web.log"), "w")
    daemon = subprocess.Popen([f"{BIN}/kithd", "--data-dir", DATA, "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
                               "--log-level", "warning"], stdout=log, stderr=log)
    driver = None
    try:
        end = time.time() + 300
        while not (os.path.exists(DATA + "/kithd.api") and os.path.getsize(DATA + "/kithd.api") > 0):
            assert daemon.poll() is None and time.time() < end, "kithd did not start"
            time.sleep(0.1)
        address = open(DATA + "/kithd.api").read().split()[0]
        def login_link():
            out = subprocess.run([f"{BIN}/kith", "open", "--print", "--data-dir", DATA], capture_output=True, text=True, check=True).stdout
            return re.search(r"(http://\S+token=\S+)", out).group(1)
        # A person opens the page a moment after kithd started (kithd builds its list index then).
        time.sleep(float(os.environ.get("KITH_BENCH_SETTLE", "3")))
        r, _ = get(address, login_link().split(address, 1)[1])
        cookie = r.getheader("Set-Cookie").split(";")[0]
        timings = []
        for _ in range(21):
            r, body = get(address, "/contacts", cookie)
            assert r.status == 200
            timings.append(float(r.getheader("Server-Timing").split("dur=")[1]))
        total = re.search(r'id="total">(\d+)<', body.decode()).group(1)
        weight = len(body) + len(get(address, "/assets/kith.css")[1]) + len(get(address, "/assets/kith.js")[1])
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,1000"]:
            options.add_argument(a)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        driver.get(login_link())
        box = driver.find_element(By.ID, "q")
        searches = []
        for q in ["a", "an", "ann", "m", "ma", "mar", "#gotv", "555", "s", "sm", "smi", "j", "jo", "joh", "e", "el"]:
            box.clear()
            box.send_keys(q)
            deadline = time.time() + 30
            while driver.execute_script("return window.kithLastSearch && window.kithLastSearch.q") != q:
                assert time.time() < deadline, f"no result for {q}"
                time.sleep(0.01)
            searches.append(driver.execute_script("return window.kithLastSearch.ms"))
        print(json.dumps({
            "contacts": int(total),
            "first_page_server_ms_first": timings[0],
            "first_page_server_ms_median": statistics.median(timings[1:]),
            "page_weight_bytes": weight,
            "search_as_you_type_ms_median": statistics.median(searches),
            "search_as_you_type_ms_max": max(searches),
        }, sort_keys=True))
    finally:
        if driver:
            driver.quit()
        daemon.terminate()
        daemon.wait(timeout=30)


if __name__ == "__main__":
    main()
