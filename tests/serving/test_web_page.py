"""The page at ``/`` in headless Chromium: upload an image, see its nearest items, click one."""

import shutil

import pytest

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api")


@pytest.mark.skipif(BROWSER is None, reason="needs Chromium (apt-get install chromium)")
def test_the_page_searches_an_upload_and_then_from_a_clicked_result(server, digit_images):
    query = sorted(digit_images.iterdir())[5]
    requests = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=BROWSER, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("request", lambda request: requests.append(request.url))
        page.goto(f"{server.url}?token={server.token}")
        page.wait_for_selector("#facts:has-text('60 items')")
        page.set_input_files("#file", str(query))
        page.wait_for_selector(".result")
        results = page.locator(".result")
        assert results.count() == 12
        first = results.nth(0)
        assert first.get_attribute("data-path").endswith(query.name)
        assert "#1" in first.inner_text() and "distance 0.0000" in first.inner_text()
        thumbnails = "[...document.querySelectorAll('.result img')]"
        page.wait_for_function(f"{thumbnails}.every(i => i.complete && i.naturalWidth > 0)")
        second = results.nth(1).get_attribute("data-id")
        results.nth(1).click()
        page.wait_for_selector(f"#status:has-text('item {second}')")
        assert page.locator(".result").nth(0).get_attribute("data-id") == second
        browser.close()
    elsewhere = [url for url in requests if not url.startswith((server.url, "blob:", "data:"))]
    assert not elsewhere, f"the page reached beyond the service: {elsewhere}"
