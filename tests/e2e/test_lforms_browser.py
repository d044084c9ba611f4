"""The vendored lforms renders a Questionnaire in Debian's chromium and gives back what was entered as a
FHIR R4 QuestionnaireResponse: the contract both the hub's form preview and the site EDC rely on.

The page and the files come from `datenraum.studies.lforms` through Playwright's routing (no server, no
network): exactly the bytes the package ships.
"""

from __future__ import annotations

from datenraum.studies import lforms

ORIGIN = "http://lforms.test"
PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'>"
    + "".join(f'<link rel="stylesheet" href="/lforms/{name}">' for name in lforms.STYLES)
    + "</head><body><div id='form'></div>"
    + "".join(f'<script src="/lforms/{name}"></script>' for name in lforms.SCRIPTS)
    + "</body></html>"
)
QUESTIONNAIRE = {
    "resourceType": "Questionnaire",
    "status": "active",
    "url": "https://datenraum.example/fhir/Questionnaire/besuch",
    "version": "1",
    "item": [
        {"linkId": "initialen", "text": "Initialen", "type": "string"},
        {"linkId": "alter", "text": "Alter (Jahre)", "type": "integer"},
    ],
}


def _serve_package_files(route) -> None:
    path = route.request.url.removeprefix(ORIGIN + "/")
    if path.startswith("lforms/"):
        name = path.removeprefix("lforms/")
        try:
            body = lforms.asset(name)
        except lforms.UnknownAsset:
            route.fulfill(status=404, body=b"")
            return
        route.fulfill(status=200, body=body, headers={"content-type": lforms.media_type(name)})
    else:
        route.fulfill(status=200, body=PAGE, headers={"content-type": "text/html; charset=utf-8"})


def test_a_two_item_questionnaire_renders_and_returns_the_entered_answers(new_page) -> None:
    page = new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.route(f"{ORIGIN}/**", _serve_package_files)
    page.goto(f"{ORIGIN}/form.html")
    page.wait_for_function("() => window.LForms && LForms.Util && LForms.Util.addFormToPage")
    assert page.evaluate("LForms.lformsVersion") == lforms.LFORMS_VERSION

    page.evaluate("q => LForms.Util.addFormToPage(q, 'form')", QUESTIONNAIRE)
    page.get_by_label("Initialen").fill("MK")
    page.get_by_label("Alter (Jahre)").fill("57")
    page.get_by_label("Alter (Jahre)").press("Tab")

    response = page.evaluate(
        "() => LForms.Util.getFormFHIRData('QuestionnaireResponse', 'R4', document.getElementById('form'))"
    )
    assert response["resourceType"] == "QuestionnaireResponse"
    answers = {item["linkId"]: item["answer"] for item in response["item"]}
    assert answers == {"initialen": [{"valueString": "MK"}], "alter": [{"valueInteger": 57}]}
    assert errors == []
