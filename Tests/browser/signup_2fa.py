"""A person in a real browser (Debian's chromium): sign up, find the confirmation mail in the
dev mailbox, confirm, sign in, turn on two-factor sign-in, sign out, sign in again with a code.

Usage: signup_2fa.py BASE_URL SCREENSHOT_DIR   (exit status 0 when every step worked)
"""
import base64
import hashlib
import hmac
import struct
import time

from selenium.webdriver.common.by import By

import easel_site as site
from easel_site import BASE, at, fill, step, submit

EMAIL, PASSWORD = "ada@example.org", "correct horse battery staple"


def totp(base32_key: str, step: int) -> str:
    """RFC 6238 with HMAC-SHA1, 6 digits: what an authenticator app shows."""
    key = base64.b32decode(base32_key + "=" * (-len(base32_key) % 8))
    digest = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


driver = site.start(414, 1000)
wait = site.wait


def sign_in():
    site.sign_in(EMAIL, PASSWORD)


try:
    driver.get(BASE + "/")
    driver.find_element(By.LINK_TEXT, "Sign up").click()
    at("/signup")
    fill("name", "Ada Lovelace")
    fill("email", EMAIL)
    fill("password", PASSWORD)
    driver.find_element(By.NAME, "age").click()
    driver.find_element(By.NAME, "terms").click()
    step("01-signup")
    submit("/signup")
    at("/verify/code")
    step("02-check-your-mail")

    driver.find_element(By.LINK_TEXT, "mailbox").click()
    at("/admin/mailbox")
    step("03-dev-mailbox")
    driver.find_element(By.PARTIAL_LINK_TEXT, "Confirm your email").click()
    link = next(a for a in driver.find_elements(By.CSS_SELECTOR, "ul a") if "/verify?token=" in a.get_attribute("href"))
    link.click()
    at("/signin")
    assert "Your email is confirmed" in driver.page_source
    step("04-confirmed")

    sign_in()
    at("/account")
    assert EMAIL in driver.page_source
    step("05-account")

    driver.find_element(By.LINK_TEXT, "Manage").click()
    at("/account/2fa")
    submit("/account/2fa/setup")
    key = driver.find_element(By.CSS_SELECTOR, "code.secret").text.strip()
    used_step = int(time.time()) // 30
    fill("code", totp(key, used_step))
    step("06-2fa-setup")
    submit("/account/2fa/enable")
    wait.until(lambda d: "recovery codes" in d.page_source)
    assert "Two-factor sign-in is on" in driver.page_source
    step("07-2fa-on")

    driver.find_element(By.CSS_SELECTOR, "form[action='/signout'] button").click()
    at("/signin")
    step("08-signed-out")

    # The code that turned 2FA on may not be used again: wait for the app's next code.
    while int(time.time()) // 30 <= used_step:
        time.sleep(0.5)
    sign_in()
    at("/signin/2fa")
    step("09-second-step")
    fill("code", totp(key, int(time.time()) // 30))
    submit("/signin/2fa")
    at("/account")
    assert EMAIL in driver.page_source
    step("10-signed-in-with-code")
    print("ok")
finally:
    driver.quit()
