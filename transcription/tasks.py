"""Huey tasks: thin, carrying only ids, calling services."""
from huey.contrib.djhuey import db_task

from . import services


@db_task(retries=0)
def transcribe_job(job_id: str) -> None:
    services.run_job(job_id)
