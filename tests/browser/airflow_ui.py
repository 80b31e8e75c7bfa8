"""What a person does in Airflow 3's UI, as Playwright steps (selectors found on Airflow 3.3).

The trigger dialog renders each Param as a field named `element_<param>` and
groups them in accordion sections; only one section is open at a time.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

RUN_URL = re.compile(r"/dags/(?P<dag>[^/]+)/runs/(?P<run>[^/?#]+)")


def open_trigger_form(page: Any, airflow: str, dag_id: str) -> Any:
    """Open the DAG's page and its trigger dialog; the dialog locator."""
    page.goto(f"{airflow}/dags/{dag_id}")
    page.get_by_test_id("trigger-dag-button").click()
    dialog = page.get_by_role("dialog")
    dialog.locator("[id*=':trigger:']").first.wait_for()
    return dialog


def trigger_button(dialog: Any) -> Any:
    return dialog.get_by_role("button", name="Trigger", exact=True)


def open_section(dialog: Any, title_start: str) -> None:
    """Expand the accordion section whose title starts with `title_start`."""
    dialog.get_by_role("button", name=re.compile(f"^{re.escape(title_start)}")).click()


def fill(dialog: Any, param: str, value: str) -> None:
    """Type into a text or number field, replacing what is there."""
    field = dialog.locator(f'input[name="element_{param}"]')
    field.fill(value)
    field.press("Tab")


def choose(dialog: Any, param: str, values: list[str]) -> None:
    """Pick values in a multi-select (an array Param with `examples`)."""
    box = dialog.locator(f"#element_{param} input[role='combobox']")
    for value in values:
        box.click()
        box.fill(value)
        box.press("Enter")


def press_trigger(page: Any, dialog: Any) -> str:
    """Press the dialog's Trigger button; the id of the run it started (from the URL)."""
    trigger_button(dialog).click()
    page.wait_for_url(RUN_URL)
    match = RUN_URL.search(page.url)
    assert match is not None, page.url
    return urllib.parse.unquote(match.group("run"))
