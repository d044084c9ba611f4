"""What the federation does when a site, the hub or a client misbehaves, with real processes on loopback.

The hub's deadline here is 4 s (conftest.HUB_SETTINGS); slow sites are made slow by starting them as
datenraum.devtools.slow_agent, the real agent with a count that pauses first.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from datenraum.devtools.demo import DEMO_QUERY
from datenraum.query.model import query_to_json

QUERY = query_to_json(DEMO_QUERY)


def states(result: dict) -> dict[str, str]:
    return {site["site"]: site["state"] for site in result["sites"]}


def test_a_site_killed_while_it_runs_a_task_times_out_and_the_others_answer(fed):
    fed.add_sites_with_agents("k-alpha", "k-beta", "k-slow", delays={"k-slow": 30})
    query_id = fed.submit("k-alpha", "k-beta", "k-slow")
    fed.wait_for(lambda: fed.site_states(query_id)["k-slow"] == "running", "the slow site to fetch its task")
    fed.processes.agents["k-slow"].stop(kill=True)

    result = fed.researcher.result(query_id, timeout=15)
    assert states(result) == {"k-alpha": "answered", "k-beta": "answered", "k-slow": "timed-out"}
    assert result["total"]["sites"] == 2


def test_a_site_that_answers_after_the_deadline_stays_timed_out_and_keeps_serving(fed):
    fed.add_sites_with_agents("l-alpha", "l-late", delays={"l-late": 5})
    result = fed.researcher.result(fed.submit("l-alpha", "l-late"), timeout=15)
    assert states(result) == {"l-alpha": "answered", "l-late": "timed-out"}

    fed.wait_for(lambda: "deadline passed" in fed.agent_log("l-late"), "the late result to be refused")
    assert fed.site_states(result["id"])["l-late"] == "timed-out"
    assert fed.agent_running("l-late")


def test_a_replayed_result_is_a_no_op_and_a_different_one_is_refused(fed):
    fed.add_site("r-manual")
    query_id = fed.submit("r-manual")
    with fed.site_client("r-manual") as site:
        [task] = site.get("/api/site/v1/tasks", params={"wait": 5}).json()["tasks"]
        result = {"task_id": task["id"], "state": "answered", "count": {"obfuscated": 40}}
        path = f"/api/site/v1/tasks/{task['id']}/result"
        assert site.post(path, json=result).status_code == 200
        assert site.post(path, json=result).status_code == 200
        assert site.post(path, json={**result, "count": {"obfuscated": 50}}).status_code == 409

    [answer] = fed.researcher.result(query_id, timeout=5)["sites"]
    assert (answer["state"], answer["count"]) == ("answered", {"obfuscated": 40})


def test_a_site_cannot_answer_or_see_another_sites_task(fed):
    fed.add_site("f-owner")
    fed.add_site("f-intruder")
    query_id = fed.submit("f-owner")
    with fed.site_client("f-owner") as owner, fed.site_client("f-intruder") as intruder:
        [task] = owner.get("/api/site/v1/tasks", params={"wait": 5}).json()["tasks"]
        forged = {"task_id": task["id"], "state": "answered", "count": {"obfuscated": 990}}
        assert intruder.post(f"/api/site/v1/tasks/{task['id']}/result", json=forged).status_code == 404
        assert intruder.get("/api/site/v1/tasks", params={"wait": 0}).json() == {"tasks": []}
    assert fed.site_states(query_id) == {"f-owner": "running"}


def test_a_wrong_credential_is_logged_clearly_and_the_agent_backs_off_without_crashing(fed, tmp_path):
    wrong = tmp_path / "wrong.credential"
    wrong.write_text("not-a-credential")
    fed.add_site("w-site")
    fed.start_agent("w-site", credential=wrong)
    fed.wait_for(lambda: "401" in fed.agent_log("w-site"), "the agent to be refused")
    time.sleep(1.5)  # several retries at the test backoff (0.1 s doubling to 0.5 s)

    assert fed.agent_running("w-site")
    log = fed.agent_log("w-site")
    assert log.count("the hub rejected this site's credential (401") == 1
    assert "Traceback" not in log


def test_a_revoked_site_is_told_so_keeps_running_and_can_no_longer_be_asked(fed):
    fed.add_sites_with_agents("v-alpha", "v-revoked")
    fed.accounts.revoke_site("v-revoked")
    fed.wait_for(
        lambda: "rejected this site's credential" in fed.agent_log("v-revoked"), "the agent to notice"
    )

    refused = fed.researcher.submit(QUERY, sites=["v-alpha", "v-revoked"])
    assert refused.status_code == 422
    assert "v-revoked" in refused.json()["error"]
    assert states(fed.researcher.result(fed.submit("v-alpha"), timeout=10)) == {"v-alpha": "answered"}
    assert fed.agent_running("v-revoked")


def test_a_malformed_query_is_refused_with_a_clear_error_and_nothing_is_stored(fed):
    fed.add_site("m-site")
    for body, error in [
        ({"query": {**QUERY, "inclusionCriteria": []}, "sites": ["m-site"]}, "$.inclusionCriteria"),
        ({"query": "women over 50", "sites": ["m-site"]}, "query"),
        ({"sites": ["m-site"]}, "query"),
    ]:
        response = fed.researcher.client.post("/api/v1/queries", json=body)
        assert response.status_code == 422, body
        assert error in response.json()["error"]
    broken = fed.researcher.client.post(
        "/api/v1/queries", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert 400 <= broken.status_code < 500
    with fed.site_client("m-site") as site:
        assert site.get("/api/site/v1/tasks", params={"wait": 0}).json() == {"tasks": []}


def test_a_hub_restart_mid_query_loses_no_task_and_no_result(start_federation, hub_database):
    fed = start_federation(hub_database, task_deadline_seconds="30")
    fed.add_sites_with_agents("fast", "slow", delays={"slow": 1.5})
    fed.add_site("late")  # its agent starts only while the hub is down
    query_id = fed.submit("fast", "slow", "late")
    fed.wait_for(
        lambda: fed.site_states(query_id) == {"fast": "answered", "slow": "running", "late": "pending"},
        "the fast site to answer and the slow one to start",
    )

    fed.processes.stop_hub(kill=True)  # the slow site's result and the late site's task are in flight
    fed.start_agent("late")  # and finds no hub: starting it again takes seconds
    # The hub stays down until the slow site has its result (answered while the hub is gone, so its post
    # fails) and has found the hub unreachable, however fast it restarts. "Unreachable" alone could come
    # from the agent's concurrent poll before the result is ready.
    fed.wait_for(
        lambda: ": answered " in fed.agent_log("slow") and "hub unreachable" in fed.agent_log("slow"),
        "the slow site to answer while the hub is gone",
    )
    fed.processes.start_hub()

    result = fed.researcher.result(query_id, timeout=20)
    assert states(result) == {"fast": "answered", "slow": "answered", "late": "answered"}
    assert "hub unreachable" in fed.agent_log("slow")
    assert fed.agent_log("slow").count("connected to the hub") == 2


def test_a_stopping_hub_answers_its_open_long_polls_at_once_instead_of_waiting_them_out(start_federation):
    fed = start_federation()
    fed.add_site("waiting-site")
    fed.add_site("silent-site")  # asked, never answers: the researcher's long-poll has nothing to wait for
    query_id = fed.submit("silent-site")
    with fed.site_client("waiting-site") as site, ThreadPoolExecutor(2) as pool:
        version = fed.researcher.client.get(f"/api/v1/queries/{query_id}").json()["version"]
        polls = [
            pool.submit(site.get, "/api/site/v1/tasks", params={"wait": 30}),
            pool.submit(
                fed.researcher.client.get,
                f"/api/v1/queries/{query_id}",
                params={"wait": 30, "since": version},
            ),
        ]
        time.sleep(1)  # both are waiting at the hub now
        assert not any(poll.done() for poll in polls)
        started = time.monotonic()
        fed.processes.stop_hub()
        stopped_after = time.monotonic() - started
        task_poll, result_poll = (poll.result(timeout=5) for poll in polls)
    assert stopped_after < 3  # the server's grace period for open requests is 5 s
    assert task_poll.status_code == 200 and task_poll.json() == {"tasks": []}
    assert result_poll.status_code == 200 and result_poll.json()["state"] == "running"
    assert "Traceback" not in fed.processes.hub.log.read_text()
