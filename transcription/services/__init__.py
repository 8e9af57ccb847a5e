"""Business rules, in rooms along the web/worker line: intake (plan, create, batch, retry, cancel,
wait), pipeline (run a job; the only module that runs an engine), recovery (workers' heartbeats,
reaper, hand-back), housekeeping (delete, purge), health, results, modeltasks (install, remove and
preload models: asked on the web side, done by a worker).

Views, API handlers, admin actions, commands and tasks call `services.<name>` and nothing else."""
from .base import ServiceError, worker_id
from .detection import detect as detect_language
from .health import health, models_listing
from .housekeeping import delete_jobs, delete_uploads, media_path, purge
from .intake import (MAX_BATCH_FILES, cancel, check_quota, create_batch, create_job, create_job_from_url, plan,
                     retry, wait_for)
from .modeltasks import (known_model, model_states, recent_tasks, removal_refused, request_install, request_preload,
                         request_removal)
from .people import create_token, revoke_token, set_callback, share, unshare
from .pipeline import release_idle_models, run_job
from .recovery import (NO_WORKER, WorkerPresence, live_unavailable, reap_stale_jobs, stop_running_jobs,
                       workers_available)
from .results import MAX_SPEAKER_NAME, rename_speakers, result_file

__all__ = [
    "MAX_BATCH_FILES", "MAX_SPEAKER_NAME", "NO_WORKER", "ServiceError", "WorkerPresence", "cancel",
    "create_batch", "create_job", "create_job_from_url", "delete_jobs", "delete_uploads", "health", "media_path",
    "models_listing", "plan", "purge", "reap_stale_jobs", "release_idle_models", "rename_speakers", "result_file", "retry", "run_job",
    "stop_running_jobs", "wait_for", "worker_id", "workers_available", "live_unavailable", "check_quota",
    "create_token", "revoke_token", "set_callback", "share", "unshare", "detect_language",
    "known_model", "model_states", "recent_tasks", "removal_refused", "request_install", "request_preload",
    "request_removal",
]
