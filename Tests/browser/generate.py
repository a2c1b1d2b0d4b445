"""A person in a real browser (Debian's chromium) makes an image with the demo provider: sign up,
confirm from the dev mailbox, sign in, write a prompt on Create, watch the progress bar, find the
picture in the gallery, open it, delete it. The balance falls by exactly the price Create showed.

Usage: generate.py BASE_URL SCREENSHOT_DIR   (exit status 0 when every step worked)
"""
import re

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

import easel_site as site
from easel_site import BASE, fill, step

EMAIL, PASSWORD = "grace@example.org", "correct horse battery staple"
PROMPT = "A lighthouse on a cliff at dusk, watercolour"

driver = site.start(1280, 1000)
wait = site.wait


def balance():
    driver.get(BASE + "/credits")
    return int(driver.find_element(By.ID, "balance").text.replace(",", "").strip())


try:
    # Sign up and confirm through the dev mailbox, as on a fresh `make run`.
    site.sign_up_and_confirm("Grace Hopper", EMAIL, PASSWORD)
    before = balance()
    step("01-credits-before")

    # Create: the demo label, a live price, submit by keyboard.
    driver.get(BASE + "/create")
    assert driver.find_elements(By.CSS_SELECTOR, ".badge.demo"), "the demo provider is labelled"
    fill("prompt", PROMPT)
    wait.until(lambda d: re.match(r"\d+ credits? ", d.find_element(By.ID, "price").text))
    price_text = driver.find_element(By.ID, "price").text
    price = int(re.match(r"(\d+) credits? ", price_text).group(1))
    assert f"balance {before}" in price_text, price_text
    step("02-create")
    driver.find_element(By.ID, "prompt").send_keys(Keys.CONTROL, Keys.ENTER)

    # The result card: a progress bar that moves, then the picture.
    card = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#result-list .result"))
    bar = card.find_element(By.CSS_SELECTOR, "progress")
    seen = set()
    WebDriverWait(driver, 30, poll_frequency=0.05).until(
        lambda d: seen.add(int(float(bar.get_attribute("value") or 0))) or card.find_elements(By.CSS_SELECTOR, "[data-f=images] img")
    )
    assert any(0 < value < 100 for value in seen), f"progress was shown on the way: {sorted(seen)}"
    assert "in the gallery" in card.text, card.text
    step("03-done")

    # The balance fell by exactly the quoted price.
    after = balance()
    assert after == before - price, f"balance {before} → {after}, price {price}"
    assert "Capture" in driver.page_source or "capture" in driver.page_source.lower()
    step("04-credits-after")

    # The gallery has it; the lightbox shows the prompt; delete it.
    driver.get(BASE + "/gallery")
    tile = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".gallery-grid li[data-id] img"))
    wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", tile))
    step("05-gallery")
    tile.click()
    lightbox = wait.until(expected_conditions.visibility_of_element_located((By.ID, "lightbox")))
    wait.until(lambda d: d.find_element(By.ID, "lightbox-prompt").text == PROMPT)
    image = driver.find_element(By.ID, "lightbox-img")
    wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", image))
    step("06-lightbox")
    driver.find_element(By.ID, "lightbox-delete").click()
    alert = wait.until(expected_conditions.alert_is_present())
    alert.accept()
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, ".gallery-grid li[data-id]"))
    step("07-deleted")

    # Gone for good: a reload shows the empty gallery.
    driver.get(BASE + "/gallery")
    assert not driver.find_elements(By.CSS_SELECTOR, ".gallery-grid li[data-id]")
    assert driver.find_elements(By.CSS_SELECTOR, "[data-empty]"), "the empty gallery says so"
    step("08-empty-gallery")
    print("ok")
finally:
    driver.quit()
