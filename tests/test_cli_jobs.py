"""`ponte jobs failed | retry | purge` against real failures: drain jobs run by a real RQ worker
against the fake Chatwoot (tests/test_deliver.py's desk), RQ's real failed registry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge import cli, cli_jobs
from bridge.jobs import runtime
from bridge.jobs.queues import STATUS_JOB, chatwoot_queue
from bridge.store import keys
from tests import test_deliver
from tests.conftest import ROOT
from tests.test_deliver import Desk

REFUSED = "Texto que o Chatwoot recusa"
desk = test_deliver.desk  # the fixture: a worker context, the fake Chatwoot, a real Redis


def ponte_jobs(capsys: pytest.CaptureFixture[str], redis_url: str, *args: str) -> tuple[int, str]:
    """`ponte jobs ... --url` through the real parser (the settings are the worker's)."""
    parsed = cli.build_parser().parse_args(["jobs", *args, "--url", redis_url])
    code = cli_jobs.run(parsed, runtime.current().settings)
    out = capsys.readouterr()
    return code, out.out + out.err


def refused_message(desk: Desk, wa_id: str = "WA1") -> None:
    """Chatwoot answers 422 to the post: failed for good at once, with a note."""
    desk.fake.fail(r"/conversations/\d+/messages$", method="POST", status=422, times=1)
    desk.whatsapp(wa_id, REFUSED)
    desk.work()


def failed_status_job(desk: Desk) -> str:
    """A status update that raises (Chatwoot 500, no retries left): in RQ's failed registry."""
    desk.fake.fail(r"/messages/\d+$", method="PATCH", status=500, times=None)
    job = chatwoot_queue(desk.redis).enqueue(STATUS_JOB, 1, 2, 3, "read", None)
    desk.work(until_empty=False)
    desk.fake.clear_failures()
    return str(job.id)


def test_failed_lists_both_places_without_message_text(
        desk: Desk, capsys: pytest.CaptureFixture[str], redis_url: str) -> None:
    assert ponte_jobs(capsys, redis_url, "failed") == (0, "No failed work.\n")
    refused_message(desk)
    job_id = failed_status_job(desk)
    code, out = ponte_jobs(capsys, redis_url, "failed")
    assert code == 0
    header, entry, job = out.splitlines()
    assert header.split()[:2] == ["ID", "WHEN"]
    (failed,) = desk.failed()
    assert entry.startswith(failed["id"]) and failed["id"].startswith("WA1-")
    assert "wa_message" in entry and f"{desk.instance} 5511988887777@s.whatsapp.net" in entry
    assert "ChatwootRejected: Chatwoot POST /api/v1/accounts/1/conversations/" in entry
    assert job.startswith(job_id) and "ponte-chatwoot" in job and "status" in job
    assert "account 1 conversation 2 message 3" in job and "ChatwootUnavailable" in job
    assert REFUSED not in out


def test_retry_puts_the_item_back_in_its_mailbox_and_it_lands_once(
        desk: Desk, capsys: pytest.CaptureFixture[str], redis_url: str) -> None:
    refused_message(desk)
    (failed,) = desk.failed()
    assert desk.redis.hget(keys.stats("failed_items"), desk.instance) == b"1"
    code, out = ponte_jobs(capsys, redis_url, "retry", failed["id"])
    assert code == 0 and out.startswith(f"retrying {failed['id']} (wa_message")
    assert desk.failed() == [] and desk.redis.hget(keys.stats("failed_items"),
                                                   desk.instance) is None
    assert desk.redis.llen(desk.mailbox) == 1  # back at the head, a drain scheduled
    desk.work()
    assert [m["content"] for m in desk.posted()] == [REFUSED]
    # The same id again: it is gone.
    code, out = ponte_jobs(capsys, redis_url, "retry", failed["id"])
    assert code == 1 and "no failed work with id" in out


def test_retry_all_requeues_rq_jobs_too(desk: Desk, capsys: pytest.CaptureFixture[str],
                                        redis_url: str) -> None:
    refused_message(desk, "WA1")
    job_id = failed_status_job(desk)
    code, out = ponte_jobs(capsys, redis_url, "retry", "--all")
    assert code == 0 and out.count("retrying") == 2 and job_id in out
    desk.work()  # the status job finds no message now (404): done, not failed
    assert [m["content"] for m in desk.posted()] == [REFUSED]
    assert ponte_jobs(capsys, redis_url, "failed") == (0, "No failed work.\n")


def test_purge_removes_everything_and_says_what(desk: Desk, capsys: pytest.CaptureFixture[str],
                                                redis_url: str) -> None:
    refused_message(desk, "WA1")
    refused_message(desk, "WA2")
    job_id = failed_status_job(desk)
    ids = [f["id"] for f in desk.failed()]
    code, out = ponte_jobs(capsys, redis_url, "purge")
    assert code == 0
    for removed in (*ids, job_id):
        assert f"removed {removed} " in out
    assert out.splitlines()[-1] == "Purged 3 failed item(s)."
    assert desk.failed() == [] and not desk.redis.exists(keys.stats("failed_items"))
    assert ponte_jobs(capsys, redis_url, "failed") == (0, "No failed work.\n")
    assert REFUSED not in out


def test_ponte_jobs_is_a_command_of_the_real_cli(redis_url: str, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "bridge.cli", "jobs", "failed", "--url",
                           redis_url], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert (done.returncode, done.stdout) == (0, "No failed work.\n"), done.stderr
    unreachable = subprocess.run([sys.executable, "-m", "bridge.cli", "jobs", "failed", "--url",
                                  "redis://:s3cret@127.0.0.1:9/0"], cwd=tmp_path, env=env,
                                 capture_output=True, text=True, timeout=60)
    assert unreachable.returncode == 1 and "not reachable" in unreachable.stderr
    assert "s3cret" not in unreachable.stderr

