"""What every browser script shares: the command line (BASE_URL SCREENSHOT_DIR), Debian's
headless chromium through selenium, and the small moves a person makes on the site.

Not named site.py: Python imports the standard library's `site` at start-up, so a sibling
site.py would never be the one imported. Scripts run as `python Tests/browser/x.py`, which puts
this folder on sys.path, so `import easel_site as site` finds this file.

A script calls `site.start(width, height)` once, then uses the helpers below and `site.driver`.
"""
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

BASE, SHOTS = sys.argv[1].rstrip("/"), sys.argv[2]

driver = None
wait = None


# Headless chromium says "HeadlessChrome" in its User-Agent, and Easel does not count robots:
# a script that needs to be counted like a person passes this (an ordinary desktop Chrome).
PERSON_USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"


def start(width, height, user_agent=None):
    """Opens the headless browser at this window size; `driver` and `wait` are set from then on.
    Headless chromium makes a window narrower than 500 pixels 500 wide: for a phone, call
    `driver.set_window_size(390, 844)` once it is open."""
    global driver, wait
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        options.add_argument(flag)
    if user_agent:
        options.add_argument(f"--user-agent={user_agent}")
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    wait = WebDriverWait(driver, 20)
    return driver


def step(name):
    """A step that worked: its name on stdout, and a screenshot of the page as it is now."""
    print(name, flush=True)
    driver.save_screenshot(f"{SHOTS}/{name}.png")


def fill(name, value):
    field = driver.find_element(By.NAME, name)
    field.clear()
    field.send_keys(value)


def submit(action):
    button = driver.find_element(By.CSS_SELECTOR, f"form[action='{action}'] button[type=submit]")
    button.click()
    # The next page has replaced this one before anything on it is looked for.
    wait.until(expected_conditions.staleness_of(button))


def path():
    """The current page's path, without query or fragment."""
    return driver.current_url.split("?")[0].split("#")[0][len(BASE):]


def at(where):
    wait.until(lambda d: d.current_url.split("?")[0].split("#")[0] == BASE + where)


def confirm_from_mailbox():
    """On a fresh instance with mail in the log, the dev mailbox is open until an admin has
    confirmed: open the confirmation mail there and follow its link (it leads to /signin)."""
    driver.get(BASE + "/admin/mailbox")
    driver.find_element(By.PARTIAL_LINK_TEXT, "Confirm your email").click()
    next(a for a in driver.find_elements(By.CSS_SELECTOR, "ul a") if "/verify?token=" in a.get_attribute("href")).click()
    at("/signin")


def sign_in(email, password):
    driver.get(BASE + "/signin")
    fill("email", email)
    fill("password", password)
    submit("/signin")


def sign_up_and_confirm(name, email, password):
    """Sign up on /signup, confirm from the dev mailbox, sign in: ends on /account."""
    driver.get(BASE + "/signup")
    fill("name", name)
    fill("email", email)
    fill("password", password)
    driver.find_element(By.NAME, "age").click()
    driver.find_element(By.NAME, "terms").click()
    submit("/signup")
    at("/verify/code")
    confirm_from_mailbox()
    sign_in(email, password)
    at("/account")
