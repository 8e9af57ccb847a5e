"""One typed job spec replaces the stored request options and the requested model/engine pair;
the result is kept in the row only (no .json copy is written any more)."""
from django.db import migrations, models

# The defaults as they were when this migration was written (rows may lack newer keys).
DEFAULTS = {
    "language": "ru", "task": "transcribe", "word_timestamps": True, "condition_on_previous_text": True,
    "no_speech_threshold": 0.4, "hallucination_silence_threshold": 0.8, "remove_silence": True,
    "silence_threshold": -60.0, "silence_duration": 0.5, "beam_size": None, "best_of": None, "patience": None,
    "length_penalty": None, "temperature": "0.0,0.2,0.4,0.6,0.8,1.0", "initial_prompt": None,
    "suppress_tokens": "-1", "no_timestamps": False, "compression_ratio_threshold": 2.4,
    "logprob_threshold": -1.0,
}


def _numbers(text, kind):
    return [kind(t) for t in str(text).split(",") if t.strip()]


def spec_from_options(options: dict) -> dict:
    o = {**DEFAULTS, **(options or {})}
    return {
        "decode": {
            "language": None if o["language"] in (None, "", "auto") else o["language"],
            "task": o["task"], "word_timestamps": o["word_timestamps"],
            "condition_on_previous_text": o["condition_on_previous_text"],
            "no_speech_threshold": o["no_speech_threshold"],
            "hallucination_silence_threshold": o["hallucination_silence_threshold"] or None,
            "beam_size": o["beam_size"], "best_of": o["best_of"], "patience": o["patience"],
            "length_penalty": o["length_penalty"], "temperature": _numbers(o["temperature"], float),
            "initial_prompt": o["initial_prompt"] or None,
            "suppress_tokens": _numbers(o["suppress_tokens"], int), "without_timestamps": o["no_timestamps"],
            "compression_ratio_threshold": o["compression_ratio_threshold"],
            "logprob_threshold": o["logprob_threshold"],
        },
        "silence": {"remove": o["remove_silence"], "threshold_db": o["silence_threshold"],
                    "min_duration": o["silence_duration"]},
    }


def options_from_spec(spec: dict) -> dict:
    d, s = spec["decode"], spec["silence"]
    return {
        "language": d["language"] or "auto", "task": d["task"], "word_timestamps": d["word_timestamps"],
        "condition_on_previous_text": d["condition_on_previous_text"],
        "no_speech_threshold": d["no_speech_threshold"],
        "hallucination_silence_threshold": d["hallucination_silence_threshold"] or 0.0,
        "remove_silence": s["remove"], "silence_threshold": s["threshold_db"], "silence_duration": s["min_duration"],
        "beam_size": d["beam_size"], "best_of": d["best_of"], "patience": d["patience"],
        "length_penalty": d["length_penalty"], "temperature": ",".join(str(t) for t in d["temperature"]),
        "initial_prompt": d["initial_prompt"], "suppress_tokens": ",".join(str(t) for t in d["suppress_tokens"]),
        "no_timestamps": d["without_timestamps"], "compression_ratio_threshold": d["compression_ratio_threshold"],
        "logprob_threshold": d["logprob_threshold"],
    }


def forward(apps, schema_editor):
    Job = apps.get_model("transcription", "Job")
    for job in Job.objects.iterator():
        job.spec_data = spec_from_options(job.options)
        job.model = job.model or job.requested_model
        job.engine = job.engine or job.requested_engine
        job.save(update_fields=["spec_data", "model", "engine"])


def backward(apps, schema_editor):
    Job = apps.get_model("transcription", "Job")
    for job in Job.objects.iterator():
        job.options = options_from_spec(job.spec_data) if job.spec_data else {}
        job.requested_model, job.requested_engine = job.model, job.engine
        job.save(update_fields=["options", "requested_model", "requested_engine"])


class Migration(migrations.Migration):
    dependencies = [("transcription", "0007_error_codes")]

    operations = [
        migrations.AddField(
            model_name="job", name="spec_data",
            field=models.JSONField(default=dict, verbose_name="spec",
                                   help_text="What the worker does, fixed when the job was created (spec.JobSpec)."),
        ),
        migrations.RunPython(forward, backward),
        migrations.RemoveField(model_name="job", name="options"),
        migrations.RemoveField(model_name="job", name="requested_model"),
        migrations.RemoveField(model_name="job", name="requested_engine"),
        migrations.RemoveField(model_name="job", name="result_json_path"),
        migrations.AlterField(
            model_name="job", name="engine",
            field=models.CharField(blank=True, help_text="Engine it runs on.", max_length=20, verbose_name="engine"),
        ),
        migrations.AlterField(
            model_name="job", name="model",
            field=models.CharField(blank=True, help_text="Model it runs with.", max_length=40, verbose_name="model"),
        ),
    ]
