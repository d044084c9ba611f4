"""The site EDC in a real browser (Debian's chromium): a visit entered with the vendored lforms under the
EDC's CSP, where branching hides and shows an item and the BMI calculation updates as one types; two
edits give two audit rows; a tampered response sent directly (an answer in a hidden item) is refused."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import uvicorn
from e2e.conftest import browser, new_page  # noqa: F401  (the shared Playwright fixtures)

from datenraum.protocol.studies import StudyRole
from datenraum.site.studies.app import create_app
from datenraum.site.studies.staff import Staff

from .conftest import DATA_ENTRY, NOW, PASSWORD, add_accounts, baseline_items, qr

STUDY = "herz-aktiv"


@pytest.fixture
def edc_url(edc) -> Iterator[str]:
    add_accounts(edc)
    app = create_app(edc, secure_cookies=False, refresh_seconds=None)
    # The socket listens before the server thread starts: the browser's first request waits in its
    # backlog until uvicorn accepts it, so nothing here polls or sleeps until the server is up.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)


def test_a_visit_is_entered_with_live_branching_and_calculation_and_a_tampered_response_is_refused(
    edc,
    edc_url,
    new_page,  # noqa: F811
) -> None:
    staff = Staff(DATA_ENTRY, "Doku", STUDY, StudyRole.DATA_ENTRY)
    participant = edc.enrolments.enrol(
        staff, edc.definitions.get(STUDY), "p-consented", {"geschlecht": "female"}, NOW
    )
    page = new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{edc_url}/login")
    page.get_by_label("E-Mail").fill(DATA_ENTRY)
    page.get_by_label("Passwort").fill(PASSWORD)
    page.get_by_role("button", name="Anmelden").click()
    page.wait_for_url(f"{edc_url}/")

    path = f"/studies/{STUDY}/participants/{participant.pseudonym}/visits/baseline/forms/0/1"
    page.goto(edc_url + path)
    page.wait_for_selector("#form[data-ready='true']")
    pregnancy = page.get_by_label("Schwangerschaft")
    page.get_by_label("weiblich").click()
    pregnancy.first.wait_for(state="visible")
    page.get_by_label("männlich").click()
    pregnancy.first.wait_for(state="detached")

    page.get_by_label("Körpergröße (cm)").fill("180")
    page.get_by_label("Körpergewicht (kg)").fill("81")
    page.get_by_label("Körpergewicht (kg)").press("Tab")
    bmi = page.get_by_label("BMI (kg/m²)")
    page.wait_for_function("el => el.value === '25'", arg=bmi.element_handle())

    page.locator("#save-status").select_option("complete")
    page.get_by_role("button", name="Speichern").click()
    page.wait_for_selector("#audit tr[data-kind='field']")
    page.wait_for_selector("#form[data-ready='true']")

    page.get_by_label("Körpergewicht (kg)").fill("90")
    page.get_by_label("Körpergewicht (kg)").press("Tab")
    page.wait_for_function("el => el.value === '27.8'", arg=page.get_by_label("BMI (kg/m²)").element_handle())
    page.get_by_label("Grund der Änderung").fill("Wiegefehler")
    page.get_by_role("button", name="Speichern").click()
    page.wait_for_selector("#audit tr:has-text('Wiegefehler')")
    weight_rows = page.locator("#audit tr[data-kind='field']", has_text="gewicht")
    assert weight_rows.count() == 2
    assert errors == []

    # The same browser session, but a response crafted by hand: "schwanger" answered for a man.
    csrf = page.locator("#save-controls").get_attribute("data-csrf")
    tampered = qr(baseline_items(gewicht=90, bmi=27.8, schwanger={"valueBoolean": True}))
    answer = page.request.post(
        edc_url + path,
        data={"response": tampered, "status": "complete", "reason": "manipuliert"},
        headers={"X-CSRF-Token": csrf or ""},
    )
    assert answer.status == 422
    assert [p["link_id"] for p in answer.json()["problems"]] == ["schwanger"]
    instance = edc.records.instances(STUDY, participant.pseudonym)[0]
    assert "schwanger" not in str(instance.response)
