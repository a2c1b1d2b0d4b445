"""A person in a real browser (Debian's chromium) and the two privacy features they can see.

1. Cookie choices, on a server with EASEL_ANALYTICS=on: a visitor sees the banner, declines, the
   banner stays gone after a reload; the footer's "Cookie choices" shows the refusal and lets
   them accept instead; a fresh browser accepts from the banner itself.
2. Export everything: sign up, confirm from the dev mailbox, make one image with the demo
   provider, press Export everything on Settings → Privacy, watch the progress until the
   download shows, download the ZIP with this browser's session, open it; the "ready" mail is in
   the mailbox (the first account is the admin, who may read it). The Privacy page fits a phone.

Page views are counted for admins only (/admin/analytics), so part 1 keeps to what the visitor's
pages show: the banner, the choices page, and whether the page carries the screen-size beacon
(which only an Accept puts there).

Usage: privacy.py BASE_URL SCREENSHOT_DIR   (exit status 0 when every step worked)
"""
import hashlib
import io
import json
import re
import time
import zipfile
from urllib.parse import urlsplit

import requests
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

import easel_site as site
from easel_site import BASE, at, fill, step, submit

NAME, EMAIL, PASSWORD = "Katherine Johnson", "katherine@example.org", "correct horse battery staple"
PROMPT = "A paper boat on a pond, ink and wash"

# As a person's browser: a headless User-Agent is a robot's, never counted and never given the beacon.
driver = site.start(1280, 1000, user_agent=site.PERSON_USER_AGENT)
wait = site.wait


def arrived(where):
    """At this path, with the page fully loaded (a click does not wait for the next page)."""
    at(where)
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")


def banner():
    """The cookie banner, when the page shows one."""
    shown = driver.find_elements(By.CSS_SELECTOR, ".consent-banner")
    return shown[0] if shown and shown[0].is_displayed() else None


def beacon():
    """Whether this page will report the screen width: only after an Accept."""
    return bool(driver.find_elements(By.CSS_SELECTOR, "meta[name=easel-beacon]"))


def ticked(name):
    return driver.find_element(By.CSS_SELECTOR, f"form[action='/cookies'] input[name={name}]").is_selected()


def fits():
    """Nothing is wider than the window: no sideways scrolling, and the elements that overflow if any."""
    return driver.execute_script(
        """
        const width = window.innerWidth;
        const wide = [...document.querySelectorAll('body *')]
          .filter(e => e.getBoundingClientRect().right > width + 0.5 && getComputedStyle(e).position !== 'fixed')
          .slice(0, 8).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className && typeof e.className === 'string' ? '.' + e.className.trim().replace(/\\s+/g, '.') : ''));
        return {scroll: document.documentElement.scrollWidth, inner: width, wide};
        """
    )


try:
    # --- 1. Cookie choices, as a visitor ------------------------------------------------
    driver.get(BASE + "/")
    shown = banner()
    assert shown, "a first visit shows the cookie banner"
    assert "Counting visits." in shown.text, shown.text
    assert shown.find_element(By.CSS_SELECTOR, "button[value=decline]").is_displayed()
    assert shown.find_element(By.CSS_SELECTOR, "button[value=accept]").is_displayed()
    assert not beacon(), "no screen-size beacon before a choice"
    step("01-banner-shown")

    submit_button = shown.find_element(By.CSS_SELECTOR, "button[value=decline]")
    submit_button.click()
    wait.until(expected_conditions.staleness_of(submit_button))
    arrived("/")
    assert not banner(), "the banner is gone once declined"
    assert not beacon()
    step("02-declined")

    driver.refresh()
    assert driver.find_element(By.CSS_SELECTOR, "main h1, main h2"), "the home page is there"
    assert not banner(), "a refusal is remembered: no banner after a reload"
    driver.get(BASE + "/signin")
    assert not banner(), "nor on another page"
    step("03-still-declined-after-reload")

    driver.get(BASE + "/")
    driver.find_element(By.CSS_SELECTOR, "footer.site-footer a[href='/cookies']").click()
    arrived("/cookies")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Cookie choices"
    assert not banner(), "the choices page is the long form of the banner"
    assert not ticked("analytics") and not ticked("preferences"), "the refusal shows on the choices page"
    assert "You have not chosen yet" not in driver.page_source
    step("04-choices-show-decline")

    driver.find_element(By.CSS_SELECTOR, "form[action='/cookies'] input[name=analytics]").click()
    driver.find_element(By.CSS_SELECTOR, "form[action='/cookies'] input[name=preferences]").click()
    submit("/cookies")
    arrived("/cookies")
    notice = wait.until(expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, ".alert.notice")))
    assert "Your choices are saved for this browser." in notice.text, notice.text
    assert ticked("analytics") and ticked("preferences"), "the new choice shows"
    step("05-choices-accepted")

    driver.get(BASE + "/")
    assert not banner(), "no banner once accepted"
    assert beacon(), "after an Accept the page carries the screen-size beacon"
    step("06-home-after-accept")

    # A new browser (no cookies) is asked again, and this time accepts from the banner.
    driver.delete_all_cookies()
    driver.get(BASE + "/")
    shown = banner()
    assert shown, "without the choice cookie the banner asks again"
    accept = shown.find_element(By.CSS_SELECTOR, "button[value=accept]")
    accept.click()
    wait.until(expected_conditions.staleness_of(accept))
    arrived("/")
    assert not banner() and beacon(), "accepted from the banner: gone, and the beacon is on"
    driver.get(BASE + "/cookies")
    assert ticked("analytics") and ticked("preferences"), "the banner's Accept shows on the choices page"
    step("07-banner-accepted")

    # --- 2. Export everything -----------------------------------------------------------
    site.sign_up_and_confirm(NAME, EMAIL, PASSWORD)
    step("08-signed-in")

    # One picture, so the archive holds an original to check.
    driver.get(BASE + "/create")
    fill("prompt", PROMPT)
    wait.until(lambda d: re.match(r"\d+ credits? ", d.find_element(By.ID, "price").text))
    driver.find_element(By.ID, "prompt").send_keys(Keys.CONTROL, Keys.ENTER)
    WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#result-list .result [data-f=images] img"))
    step("09-image-made")

    driver.get(BASE + "/account")
    driver.find_element(By.CSS_SELECTOR, "main a[href='/account/privacy']").click()
    arrived("/account/privacy")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Privacy and your data"
    panel = driver.find_element(By.ID, "export")
    assert panel.find_element(By.TAG_NAME, "h2").text == "Export everything"
    assert not panel.find_elements(By.CSS_SELECTOR, ".export-ready"), "no export yet"
    driver.execute_script("arguments[0].scrollIntoView()", panel)
    step("10-privacy-page")

    submit("/account/privacy/export")
    at("/account/privacy")
    # The page as the server sent it after the press: it shows the export under way. (On a
    # busy machine the script may reload it to the finished state before the loop looks.)
    first = re.search(r'id="export-text"[^>]*>([^<]+)<', driver.page_source)
    # Follow the block as the page's script updates it and finally reloads the page.
    texts, values, progress_shot = ([first.group(1).strip()] if first else []), [], False
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if driver.find_elements(By.CSS_SELECTOR, "#export .export-ready a[href*='/download']") and not driver.find_elements(By.ID, "export-progress"):
                break
            for text in driver.find_elements(By.ID, "export-text"):
                if not texts or texts[-1] != text.text:
                    texts.append(text.text)
                if not progress_shot:
                    driver.execute_script("arguments[0].scrollIntoView()", driver.find_element(By.ID, "export"))
                    step("11-export-under-way")
                    progress_shot = True
            for bar in driver.find_elements(By.ID, "export-bar"):
                value = bar.get_attribute("value")
                if value and (not values or values[-1] != value):
                    values.append(value)
        except (StaleElementReferenceException, WebDriverException):
            pass  # the page reloaded between two looks
        time.sleep(0.05)
    else:
        raise AssertionError(f"the export never became ready; the page said {texts}")
    print(f"   progress seen: {texts} bar values {values}", flush=True)
    assert progress_shot or first, "the page showed the export under way before it was ready"
    assert texts and re.match(r"(Your export|Building your export)", texts[0]), texts
    link = driver.find_element(By.CSS_SELECTOR, "#export .export-ready a[href*='/download']")
    download_url = link.get_attribute("href")
    ready = driver.find_element(By.CSS_SELECTOR, "#export .export-ready").text
    assert re.match(r"Export of .+, .+, kept until .+\.", ready), ready
    assert driver.find_element(By.CSS_SELECTOR, "form[action='/account/privacy/export'] button").is_displayed(), "a new export may be started again"
    driver.execute_script("arguments[0].scrollIntoView()", driver.find_element(By.ID, "export"))
    step("12-export-ready")

    # The page's link, with this browser's session.
    session = requests.Session()
    for cookie in driver.get_cookies():
        session.cookies.set(cookie["name"], cookie["value"])
    response = session.get(download_url, timeout=30)
    assert response.status_code == 200, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/zip"), response.headers
    assert re.search(r'attachment; filename="easel-export-\d{4}-\d\d-\d\d\.zip"', response.headers["Content-Disposition"]), response.headers
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None, "every CRC matches"
    names = archive.namelist()
    assert "account.json" in names, names
    account = json.loads(archive.read("account.json"))
    assert EMAIL in json.dumps(account), "the archive is this person's"
    assert "$2b$" not in json.dumps(account) and "password_hash" not in json.dumps(account), "never the password hash"
    images = json.loads(archive.read("images.json"))
    originals = [name for name in names if name.startswith("images/")]
    assert originals, names
    for name in originals:
        digest = hashlib.sha256(archive.read(name)).hexdigest()
        assert digest in json.dumps(images), f"{name}: its sha256 is in images.json"
    # Anyone else (no session) gets nothing.
    assert requests.get(download_url, timeout=30, allow_redirects=False).status_code in (302, 303, 401, 403, 404)
    print(f"   archive: {len(response.content)} bytes, {sorted(names)}", flush=True)
    step("13-export-downloaded")

    # The mail that says it is ready, in the dev mailbox: the first account is the admin.
    if driver.find_elements(By.CSS_SELECTOR, "nav a[href='/admin/mailbox']"):
        driver.find_element(By.CSS_SELECTOR, "nav a[href='/admin/mailbox']").click()
        arrived("/admin/mailbox")
        # Queued with the export's last step; reload until it is listed.
        WebDriverWait(driver, 20, poll_frequency=0.5).until(
            lambda d: d.find_elements(By.PARTIAL_LINK_TEXT, "export is ready") or d.refresh() or False
        )
        driver.find_element(By.PARTIAL_LINK_TEXT, "export is ready").click()
        assert EMAIL in driver.page_source
        links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "main ul a")]
        download_path = urlsplit(download_url).path
        assert any(urlsplit(href).path == download_path for href in links), f"the mail links to {download_path}: {links}"
        step("14-ready-mail")
    else:
        print("   (the mailbox is for admins only: the ready mail is not checked)", flush=True)

    # The Privacy page on a phone: nothing wider than the screen.
    driver.set_window_size(390, 844)
    driver.get(BASE + "/account/privacy")
    size = fits()
    driver.execute_script("document.getElementById('export').scrollIntoView()")
    step("15-privacy-on-a-phone")
    assert size["inner"] <= 400, f"the window is phone-sized: {size}"
    assert size["scroll"] <= size["inner"], f"the Privacy page scrolls sideways on a phone: {size}"
    print("ok")
finally:
    driver.quit()
