"""The EDC's pages: sign-in, the studies, participants and enrolment, the visit plan, a form (rendered
with the vendored lforms), its status, lock and signature, audit trail, queries and data-quality findings.

Every page of a study first finds the person's role on that study's roster for this site; a study they
have no site role in does not exist for them (404). The operations check the role again themselves.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from datenraum.protocol.studies import StudyDefinition, Visit
from datenraum.site.studies.definitions import UnknownStudy
from datenraum.site.studies.enrolment import EnrolmentRefused
from datenraum.site.studies.entry import EntryError, ResponseRefused, visit_of
from datenraum.site.studies.permissions import Action, PermissionDenied, allowed
from datenraum.site.studies.quality import study_findings
from datenraum.site.studies.queries import QueryError
from datenraum.site.studies.records import FormInstance, FormStatus, Participant
from datenraum.site.studies.service import Edc
from datenraum.site.studies.staff import Staff
from datenraum.site.studies.web import (
    SESSION_COOKIE,
    NotSignedIn,
    checked_form,
    checked_json,
    edc_of,
    form_text,
    redirect,
    render,
    require_account,
    set_session,
    texts,
)
from datenraum.site.studies.writeback import StoreWriteError
from datenraum.studies import lforms

__all__ = ["add_pages"]


def _study(
    request: Request, study_id: str, action: Action = Action.READ
) -> tuple[Edc, StudyDefinition, Staff]:
    edc = edc_of(request)
    account = require_account(request)
    try:
        definition = edc.definitions.get(study_id)
    except UnknownStudy:
        raise HTTPException(404, "no such study at this site") from None
    staff = edc.staff(account, study_id)
    if staff.role is None:
        raise HTTPException(
            404, "no such study at this site"
        )  # not on its roster: it does not exist for them
    if not allowed(staff.role, action):
        raise PermissionDenied(f"{staff.role.value} may not {action.value}")
    return edc, definition, staff


def _participant(edc: Edc, study_id: str, pseudonym: str) -> Participant:
    participant = edc.records.participant(study_id, pseudonym)
    if participant is None:
        raise HTTPException(404, "no such participant in this study at this site")
    return participant


def _form_slot(definition: StudyDefinition, participant: Participant, visit_code: str, number: int):
    try:
        visit = visit_of(definition, participant, visit_code)
    except EntryError:
        raise HTTPException(404, "no such visit in the participant's plan") from None
    if not 0 <= number < len(visit.forms):
        raise HTTPException(404, "no such form at this visit")
    return visit, visit.forms[number]


def _plan(edc: Edc, definition: StudyDefinition, participant: Participant) -> list[dict[str, Any]]:
    """The visit plan: per visit, per form, its instances (status, lock, signature) and the next number."""
    instances = edc.records.instances(definition.study_id, participant.pseudonym)
    arm = next(a for a in definition.arms if a.code == participant.arm)
    plan = []
    for visit in arm.visits:
        forms = []
        for number, planned in enumerate(visit.forms):
            mine = [i for i in instances if i.visit == visit.code and i.form.split("|")[0] == planned.url]
            title = definition.current_form(planned.url).questionnaire.get("title") or planned.url
            forms.append(
                {
                    "number": number,
                    "title": title,
                    "repeating": planned.repeating,
                    "instances": sorted(mine, key=lambda i: i.instance),
                    "next": max((i.instance for i in mine), default=0) + 1,
                }
            )
        plan.append({"visit": visit, "forms": forms})
    return plan


def _form_path(study_id: str, pseudonym: str, visit: str, number: int, instance: int) -> str:
    return f"/studies/{study_id}/participants/{pseudonym}/visits/{visit}/forms/{number}/{instance}"


def add_pages(app: FastAPI, *, session_hours: float, secure_cookies: bool) -> None:
    app.mount("/static", StaticFiles(directory=__file__.rsplit("/", 1)[0] + "/static"), name="static")

    @app.exception_handler(NotSignedIn)
    async def _sign_in_first(request: Request, _error: NotSignedIn) -> Response:
        return redirect("/login")

    @app.exception_handler(PermissionDenied)
    async def _denied(request: Request, error: PermissionDenied) -> Response:
        return _error(request, 403, str(error))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, error: HTTPException) -> Response:
        return _error(request, error.status_code, str(error.detail))

    @app.get("/lforms/{name:path}")
    async def lforms_file(name: str) -> Response:
        try:
            body = lforms.asset(name)
        except lforms.UnknownAsset:
            raise HTTPException(404, "no such file") from None
        return Response(body, media_type=lforms.media_type(name), headers={"cache-control": "max-age=86400"})

    @app.get("/login")
    async def login_page(request: Request) -> Response:
        return render(request, "login.html")

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await checked_form(request)
        edc = edc_of(request)
        account = await run_in_threadpool(
            edc.accounts.check_password, form_text(form, "email"), form_text(form, "password")
        )
        if account is None:
            return render(request, "login.html", 401, failed=True, email=form_text(form, "email"))
        token = edc.accounts.start_session(account, edc.now())
        response = redirect("/")
        set_session(response, request, token, session_hours, secure_cookies)
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        await checked_form(request)
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            edc_of(request).accounts.end_session(token)
        response = redirect("/login")
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/")
    async def studies(request: Request) -> Response:
        account = require_account(request)
        edc = edc_of(request)
        return render(request, "studies.html", studies=edc.definitions.visible_to(account.email))

    @app.post("/refresh")
    async def refresh(request: Request) -> Response:
        await checked_form(request)
        require_account(request)
        problem = await run_in_threadpool(edc_of(request).pull_quietly)
        if problem is not None:
            return _error(request, 502, f"{texts(request)['hub_away']}: {problem}")
        return redirect("/")

    @app.get("/studies/{study_id}")
    async def participants(request: Request, study_id: str) -> Response:
        edc, definition, staff = _study(request, study_id)
        return render(
            request,
            "participants.html",
            study=definition,
            staff=staff,
            participants=edc.records.participants(study_id),
            can_enrol=allowed(staff.role, Action.ENROL),
            open_queries=len(edc.records.open_queries(study_id)),
            findings=len(study_findings(definition, edc.records)),
        )

    @app.post("/studies/{study_id}/enrol")
    async def enrol(request: Request, study_id: str) -> Response:
        form = await checked_form(request)
        edc, definition, staff = _study(request, study_id, Action.ENROL)
        factors = {f.name: form_text(form, f"factor_{f.name}") for f in definition.factors}
        try:
            participant = await run_in_threadpool(
                edc.enrolments.enrol, staff, definition, form_text(form, "patient_id"), factors, edc.now()
            )
        except (EnrolmentRefused, StoreWriteError) as refused:
            return render(
                request,
                "participants.html",
                422,
                study=definition,
                staff=staff,
                participants=edc.records.participants(study_id),
                can_enrol=True,
                open_queries=len(edc.records.open_queries(study_id)),
                findings=len(study_findings(definition, edc.records)),
                refused=str(refused),
                patient_id=form_text(form, "patient_id"),
            )
        return redirect(f"/studies/{study_id}/participants/{participant.pseudonym}")

    @app.get("/studies/{study_id}/participants/{pseudonym}")
    async def visit_plan(request: Request, study_id: str, pseudonym: str) -> Response:
        edc, definition, staff = _study(request, study_id)
        participant = _participant(edc, study_id, pseudonym)
        return render(
            request,
            "participant.html",
            study=definition,
            staff=staff,
            participant=participant,
            plan=_plan(edc, definition, participant),
            form_path=_form_path,
        )

    @app.get("/studies/{study_id}/participants/{pseudonym}/visits/{visit}/forms/{number}/{instance}")
    async def form_page(
        request: Request, study_id: str, pseudonym: str, visit: str, number: int, instance: int
    ) -> Response:
        edc, definition, staff = _study(request, study_id)
        participant = _participant(edc, study_id, pseudonym)
        visit_, planned = _form_slot(definition, participant, visit, number)
        if instance < 1 or (instance > 1 and not planned.repeating):
            raise HTTPException(404, "no such instance of this form")
        existing = edc.records.find_instance(study_id, pseudonym, visit, planned.url, instance)
        form = definition.form(existing.form) if existing else definition.current_form(planned.url)
        return render(
            request,
            "form.html",
            study=definition,
            staff=staff,
            participant=participant,
            visit=visit_,
            form=form,
            instance_number=instance,
            existing=existing,
            audit=edc.records.audit(existing.id) if existing else [],
            queries=edc.records.queries(existing.id) if existing else [],
            findings=edc.records.findings(existing.id) if existing else [],
            link_ids=_link_ids(form.questionnaire),
            can_enter=allowed(staff.role, Action.ENTER) and not (existing and existing.locked),
            can_lock=allowed(staff.role, Action.LOCK),
            can_sign=allowed(staff.role, Action.SIGN),
            can_open_query=allowed(staff.role, Action.OPEN_QUERY),
            can_answer_query=allowed(staff.role, Action.ANSWER_QUERY),
            statuses=list(FormStatus),
            lforms_styles=lforms.STYLES,
            lforms_scripts=lforms.SCRIPTS,
            path=_form_path(study_id, pseudonym, visit, number, instance),
        )

    @app.post("/studies/{study_id}/participants/{pseudonym}/visits/{visit}/forms/{number}/{instance}")
    async def save(
        request: Request, study_id: str, pseudonym: str, visit: str, number: int, instance: int
    ) -> Response:
        body = await checked_json(request)
        edc, definition, staff = _study(request, study_id, Action.ENTER)
        participant = _participant(edc, study_id, pseudonym)
        _visit, planned = _form_slot(definition, participant, visit, number)
        response, status, reason = body.get("response"), body.get("status"), body.get("reason")
        if not isinstance(response, dict):
            return _problems(400, [("", "$.response", "expected a QuestionnaireResponse object")])
        try:
            status = FormStatus(status)
        except ValueError:
            choices = ", ".join(s.value for s in FormStatus)
            return _problems(400, [("", "$.status", f"expected one of {choices}")])
        if reason is not None and not isinstance(reason, str):
            return _problems(400, [("", "$.reason", "expected a text")])
        try:
            saved = await run_in_threadpool(
                edc.entry.save,
                staff,
                definition,
                participant,
                visit,
                planned.url,
                instance,
                response,
                status,
                reason,
                edc.now(),
            )
        except ResponseRefused as refused:
            return _problems(
                422,
                [(p.link_id, f"$.response{p.path.removeprefix('$')}", p.message) for p in refused.problems],
            )
        except (EntryError, StoreWriteError) as error:
            return _problems(422, [("", "$", str(error))])
        return JSONResponse({"saved": True, "status": saved.instance.status.value, "changed": saved.changed})

    async def _instance_of(
        request: Request,
        study_id: str,
        pseudonym: str,
        visit: str,
        number: int,
        instance: int,
        action: Action,
    ):
        edc, definition, staff = _study(request, study_id, action)
        participant = _participant(edc, study_id, pseudonym)
        _visit, planned = _form_slot(definition, participant, visit, number)
        existing = edc.records.find_instance(study_id, pseudonym, visit, planned.url, instance)
        if existing is None:
            raise HTTPException(404, "the form has not been saved yet")
        return edc, definition, staff, existing

    @app.post("/studies/{study_id}/participants/{pseudonym}/visits/{visit}/forms/{number}/{instance}/{step}")
    async def form_step(
        request: Request, study_id: str, pseudonym: str, visit: str, number: int, instance: int, step: str
    ) -> Response:
        form = await checked_form(request)
        actions = {
            "lock": Action.LOCK,
            "unlock": Action.LOCK,
            "sign": Action.SIGN,
            "query": Action.OPEN_QUERY,
        }
        if step not in actions:
            raise HTTPException(404, "no such step")
        edc, definition, staff, existing = await _instance_of(
            request, study_id, pseudonym, visit, number, instance, actions[step]
        )
        now = edc.now()
        try:
            if step == "lock":
                edc.entry.lock(staff, existing, now)
            elif step == "unlock":
                edc.entry.unlock(staff, existing, form_text(form, "reason"), now)
            elif step == "sign":
                account = await run_in_threadpool(
                    edc.accounts.check_password, staff.email, form_text(form, "password")
                )
                edc.entry.sign(staff, existing, account is not None, now)
            else:
                known = set(_link_ids(definition.form(existing.form).questionnaire))
                edc.queries.open(
                    staff, existing, form_text(form, "link_id"), form_text(form, "text"), known, now
                )
        except (EntryError, QueryError) as error:
            return _error(request, 422, str(error))
        return redirect(_form_path(study_id, pseudonym, visit, number, instance))

    @app.post("/studies/{study_id}/queries/{query_id}/{step}")
    async def query_step(request: Request, study_id: str, query_id: int, step: str) -> Response:
        form = await checked_form(request)
        actions = {"answer": Action.ANSWER_QUERY, "reopen": Action.OPEN_QUERY, "close": Action.CLOSE_QUERY}
        if step not in actions:
            raise HTTPException(404, "no such step")
        edc, _definition, staff = _study(request, study_id, actions[step])
        query = edc.records.query(query_id)
        instance = edc.records.instance(query.form_instance) if query else None
        if query is None or instance is None or instance.study_id != study_id:
            raise HTTPException(404, "no such query in this study")
        operation = {"answer": edc.queries.answer, "reopen": edc.queries.reopen, "close": edc.queries.close}[
            step
        ]
        try:
            operation(staff, query, form_text(form, "text"), edc.now())
        except QueryError as error:
            return _error(request, 422, str(error))
        back = form_text(form, "back")
        return redirect(back if back.startswith(f"/studies/{study_id}/") else f"/studies/{study_id}/queries")

    @app.get("/studies/{study_id}/queries")
    async def queries(request: Request, study_id: str) -> Response:
        edc, definition, staff = _study(request, study_id)
        return render(
            request,
            "queries.html",
            study=definition,
            staff=staff,
            queries=edc.records.open_queries(study_id),
            link=lambda i: _instance_link(definition, edc, i),
        )

    @app.get("/studies/{study_id}/quality")
    async def quality(request: Request, study_id: str) -> Response:
        edc, definition, staff = _study(request, study_id)
        return render(
            request,
            "quality.html",
            study=definition,
            staff=staff,
            findings=study_findings(definition, edc.records),
            link=lambda i: _instance_link(definition, edc, i),
        )


def _instance_link(definition: StudyDefinition, edc: Edc, instance: FormInstance) -> str:
    participant = edc.records.participant(definition.study_id, instance.pseudonym)
    assert participant is not None  # an instance belongs to an enrolled participant
    visit: Visit = visit_of(definition, participant, instance.visit)
    url = instance.form.split("|")[0]
    number = next(n for n, f in enumerate(visit.forms) if f.url == url)
    return _form_path(definition.study_id, instance.pseudonym, instance.visit, number, instance.instance)


def _link_ids(questionnaire: dict[str, Any]) -> list[str]:
    found: list[str] = []

    def walk(items: Any) -> None:
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict):
                if item.get("type") not in ("group", "display") and isinstance(item.get("linkId"), str):
                    found.append(item["linkId"])
                walk(item.get("item"))

    walk(questionnaire.get("item"))
    return found


def _problems(status: int, problems: list[tuple[str, str, str]]) -> JSONResponse:
    return JSONResponse(
        {"saved": False, "problems": [{"link_id": link, "path": p, "message": m} for link, p, m in problems]},
        status_code=status,
    )


def _error(request: Request, status: int, message: str) -> Response:
    if (
        request.headers.get("x-csrf-token") is not None
        or "json" in request.headers.get("accept", "").split(",")[0]
    ):
        return JSONResponse({"detail": message}, status_code=status)
    return render(request, "error.html", status, message=message, status=status)
