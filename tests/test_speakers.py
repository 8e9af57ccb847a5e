"""Speakers (diarize=true): the offline encoder and clustering on real voices, their result in every
format, the request checks, the REST API, the CLI, the OpenAI client, and the backends' install."""
import base64
import io
import pickle
import struct
from pathlib import Path

import numpy as np
import openai
import pytest
import requests
from django.core.management import CommandError, call_command
from django.test import override_settings

from tests import conversations
from tests.conftest import post_file
from transcription import formats, speakers
from transcription.models import Job, Upload, media_file
from transcription.result import Speaker, StoredSegment, Word, with_names
from transcription.speakers import assign, ge2e, store
from transcription.speakers.base import Count, Diarization, Turn


@pytest.fixture(scope="module")
def recordings():
    return conversations.recordings()


@pytest.fixture(scope="module")
def files(recordings, tmp_path_factory):
    folder = tmp_path_factory.mktemp("conversations")
    out = {name: conversations.write(samples, folder / f"{name}.wav") for name, (samples, _, _) in recordings.items()}
    out["silence"] = conversations.write(np.zeros(5 * 16000, dtype=np.float32), folder / "silence.wav")
    return out


def _chunks(turns: list[conversations.Turn], found: Diarization) -> list[dict]:
    """Quarter-second pieces of the true turns, each with the speaker the diarization gives it."""
    out = []
    for t in turns:
        at = t.start
        while at + 0.25 <= t.end:
            out.append({"start": at, "end": at + 0.25,
                        "speaker": str(assign.speaker_at(at, at + 0.25, found.turns))})
            at += 0.25
    return out


# --- the encoder and the clustering, on real voices ----------------------------------------------


def test_the_checkpoint_reader_reads_the_wheel_and_runs_no_other_object(tmp_path):
    tensors = ge2e.read_torch_legacy(store.bundled_checkpoint())
    assert tensors["lstm.weight_hh_l2"].shape == (1024, 256) and tensors["linear.bias"].shape == (256,)
    assert all(np.isfinite(v).all() for v in tensors.values())
    # A legacy-format file whose pickle names something other than tensors is refused, not run.
    hostile = tmp_path / "hostile.pt"
    with open(hostile, "wb") as fh:
        for part in (0x1950A86A20F9469CFC6C, 1001, {}):
            pickle.dump(part, fh, protocol=2)
        fh.write(b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")
    with pytest.raises(ge2e.WeightsError, match="unexpected object os.system"):
        ge2e.read_torch_legacy(hostile)
    other = tmp_path / "other.pt"
    other.write_bytes(b"PK\x03\x04" + struct.pack("<I", 7) * 10)
    with pytest.raises(ge2e.WeightsError):
        ge2e.read_torch_legacy(other)


def test_two_clips_of_one_voice_are_closer_than_clips_of_two_voices():
    backend = speakers.get("resemblyzer")
    one_a = backend.embed_voice(conversations.clip("ru_stp_kakaya_pogoda_v_nyu-yorke.wav"))
    one_b = backend.embed_voice(conversations.clip("ru_stp_kotoryy_seychas_chas.wav"))
    other = backend.embed_voice(conversations.clip("ru_pisets_test_sound_ru.wav"))
    assert float(one_a @ one_b) > max(float(one_a @ other), float(one_b @ other)) + 0.2


@pytest.mark.parametrize("name", ["en-2", "en-4", "en-1", "ru-2"])
def test_every_recording_gets_the_right_count_and_turns(recordings, name):
    samples, truth, _ = recordings[name]
    found = speakers.get("resemblyzer").diarize(samples, Count())
    score = conversations.word_speaker_error(_chunks(truth, found), truth)
    assert score["speakers_found"] == score["speakers_true"]
    assert score["error"] <= 0.05


@pytest.mark.parametrize("name", ["en-2", "en-4", "en-1", "ru-2"])
def test_voices_sharing_one_channel_and_its_noise_are_still_told_apart(recordings, name):
    samples, truth, _ = recordings[name]
    found = speakers.get("resemblyzer").diarize(conversations.one_channel(samples, truth, snr_db=30), Count())
    score = conversations.word_speaker_error(_chunks(truth, found), truth)
    assert score["speakers_found"] == score["speakers_true"]
    assert score["error"] <= 0.05


def test_a_given_count_or_bounds_are_kept(recordings):
    backend = speakers.get("resemblyzer")
    samples, _, _ = recordings["en-4"]
    assert len(backend.diarize(samples, Count(num=2)).speakers) == 2
    assert len(backend.diarize(samples, Count(high=3)).speakers) <= 3
    assert len(backend.diarize(recordings["en-1"][0], Count(low=2)).speakers) >= 2
    assert backend.diarize(np.zeros(16000 * 3, dtype=np.float32), Count()).turns == []


# --- onto the result ------------------------------------------------------------------------------


def _segment(words: list[tuple[float, float, str]], **extra) -> StoredSegment:
    return StoredSegment(id=0, start=words[0][0], end=words[-1][1], text="".join(w for _, _, w in words),
                         tokens=[1, 2, 3], words=[Word(start=a, end=b, word=w) for a, b, w in words], **extra)


def test_a_segment_spanning_a_change_of_speaker_is_split_at_the_word():
    seg = _segment([(0.0, 0.5, " Hello"), (0.5, 1.0, " there."), (1.4, 1.9, " Hi"), (1.9, 2.4, " back.")],
                   avg_logprob=-0.2)
    found = Diarization(turns=[Turn(0.0, 1.2, 0), Turn(1.3, 2.5, 1)])
    segments, listed = assign.label([seg], found, offset=0.0)
    assert [(s.id, s.speaker, s.text, s.start, s.end) for s in segments] == [
        (0, "SPEAKER_1", "Hello there.", 0.0, 1.0), (1, "SPEAKER_2", "Hi back.", 1.4, 2.4)]
    assert all(w.speaker == s.speaker for s in segments for w in s.words)
    assert segments[0].tokens == [] and segments[0].avg_logprob == -0.2  # tokens belong to the whole
    assert [(s.id, s.seconds, s.words) for s in listed] == [("SPEAKER_1", 1.2, 2), ("SPEAKER_2", 1.2, 2)]


def test_labels_follow_the_first_word_and_the_offset_moves_the_turns():
    seg = _segment([(10.0, 10.5, " One"), (12.0, 12.5, " two")])
    # The diarized samples began 10 s into the file; cluster 1 speaks first there.
    found = Diarization(turns=[Turn(0.0, 1.0, 1), Turn(1.5, 3.0, 0)])
    segments, listed = assign.label([seg], found, offset=10.0, names={0: "Anna"})
    assert [s.speaker for s in segments] == ["SPEAKER_1", "SPEAKER_2"]
    assert [(s.id, s.name) for s in listed] == [("SPEAKER_1", None), ("SPEAKER_2", "Anna")]
    # No turns at all (speech the VAD did not hear): one speaker, not none.
    segments, listed = assign.label([seg], Diarization(turns=[]), offset=0.0)
    assert {s.speaker for s in segments} == {"SPEAKER_1"} and len(listed) == 1


def test_known_voices_name_only_the_clusters_they_resemble():
    a, b, c = np.eye(3, dtype=np.float32)
    voices = {0: a, 1: b}
    assert assign.match(voices, [("Anna", a * 0.9 + b * 0.1), ("Boris", b)]) == {0: "Anna", 1: "Boris"}
    assert assign.match(voices, [("Stranger", c)]) == {}


DIARIZED = {
    "text": "Hello there. Hi back.",
    "speakers": [{"id": "SPEAKER_1", "name": None, "seconds": 1.0, "words": 2},
                 {"id": "SPEAKER_2", "name": None, "seconds": 1.0, "words": 2}],
    "segments": [
        {"id": 0, "start": 0.0, "end": 1.0, "text": "Hello there.", "speaker": "SPEAKER_1",
         "words": [{"start": 0.0, "end": 0.5, "word": " Hello", "speaker": "SPEAKER_1"},
                   {"start": 0.5, "end": 1.0, "word": " there.", "speaker": "SPEAKER_1"}]},
        {"id": 1, "start": 1.4, "end": 2.4, "text": "Hi back.", "speaker": "SPEAKER_2",
         "words": [{"start": 1.4, "end": 1.9, "word": " Hi", "speaker": "SPEAKER_2"},
                   {"start": 1.9, "end": 2.4, "word": " back.", "speaker": "SPEAKER_2"}]},
    ],
}


def test_every_format_says_who_speaks_with_the_names_given():
    named = with_names(DIARIZED, {"SPEAKER_2": "Boris <the> & Co"})
    assert formats.to_txt(named) == "SPEAKER_1: Hello there.\n\nBoris <the> & Co: Hi back.\n"
    vtt = formats.to_vtt(named)
    assert "<v SPEAKER_1>Hello there." in vtt and "<v Boris &lt;the&gt; &amp; Co>Hi back." in vtt
    assert "Boris ‹the› & Co: Hi back." in formats.to_srt(named)  # no tag for a SubRip player
    assert formats.to_tsv(named).splitlines()[0] == "start\tend\ttext\tspeaker"
    assert formats.to_tsv(named).splitlines()[2] == "1400\t2400\tHi back.\tBoris <the> & Co"
    # Cues filled up to a width still end where the speaker changes.
    cues = formats.to_srt(named, formats.SubtitleOptions(max_line_width=80, max_line_count=2))
    assert "SPEAKER_1: Hello there.\n\n" in cues and "Boris ‹the› & Co: Hi back." in cues
    # Without speakers, nothing changes.
    plain = {**DIARIZED, "speakers": None, "segments": [
        {k: v for k, v in s.items() if k != "speaker"} for s in DIARIZED["segments"]]}
    for seg in plain["segments"]:
        seg["words"] = [{k: v for k, v in w.items() if k != "speaker"} for w in seg["words"]]
    assert formats.to_txt(plain) == "Hello there. Hi back.\n"
    assert formats.to_tsv(plain).splitlines()[0] == "start\tend\ttext"


def test_speaker_model_rounds_and_validates():
    assert Speaker(id="SPEAKER_1", seconds=1.5, words=3).name is None


# --- requests -------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("fields, field, words", [
    ({"diarize": "true", "num_speakers": "0"}, "num_speakers", "greater than or equal to 1"),
    ({"diarize": "true", "num_speakers": "1000"}, "num_speakers", "less than or equal to 20"),
    ({"diarize": "true", "word_timestamps": "false"}, "word_timestamps", "needs word_timestamps"),
    ({"diarize": "true", "no_timestamps": "true"}, "no_timestamps", "needs timestamps"),
    ({"diarize": "true", "min_speakers": "4", "max_speakers": "2"}, "min_speakers", "more than max_speakers"),
    ({"diarize": "true", "num_speakers": "5", "max_speakers": "3"}, "num_speakers", "more than max_speakers (3)"),
    ({"diarize": "true", "num_speakers": "2", "min_speakers": "3"}, "num_speakers", "less than min_speakers (3)"),
    ({"num_speakers": "2"}, "num_speakers", "needs diarize=true"),
])
def test_bad_speaker_options_are_refused_before_anything_is_stored(client, clips, fields, field, words):
    with open(clips["flac"], "rb") as fh:
        resp = client.post("/transcribe", {"file": fh, "language": "en", **fields})
    assert resp.status_code == 422, resp.content
    assert field in resp.content.decode() and words in resp.content.decode()
    assert not Upload.objects.exists() and not Job.objects.exists()


@pytest.mark.django_db
def test_a_russian_page_gets_the_speaker_refusals_in_russian(client, clips):
    with open(clips["flac"], "rb") as fh:
        resp = client.post("/transcribe", {"file": fh, "diarize": "true", "min_speakers": "5", "max_speakers": "2"},
                           HTTP_ACCEPT_LANGUAGE="ru")
    assert resp.status_code == 422 and resp.json()["detail"] == "Минимум говорящих (5) больше максимума (2)"


# --- end to end -----------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_two_person_recording_gets_two_renamable_speakers_over_http(service, files, recordings):
    resp = post_file(service, files["en-2"], language="en", diarize=True)
    assert resp.status_code == 200, resp.text
    result = resp.json()
    assert [s["id"] for s in result["speakers"]] == ["SPEAKER_1", "SPEAKER_2"]
    assert all(s["seconds"] > 5 for s in result["speakers"])
    words = [w for s in result["segments"] for w in s["words"]]
    assert all(s["speaker"] for s in result["segments"]) and all(w["speaker"] for w in words)
    assert conversations.word_speaker_error(words, recordings["en-2"][1])["error"] <= 0.05
    assert "diarization_seconds" in result["timings"]
    kennedy = next(s["speaker"] for s in result["segments"] if "fellow" in s["text"].lower())

    job_url = f"{service}/job/{result['job_id']}"
    renamed = requests.put(f"{job_url}/speakers", json={"names": {kennedy: "Kennedy"}}, timeout=30)
    assert renamed.status_code == 200 and {"id": kennedy, "name": "Kennedy"}.items() <= next(
        s for s in renamed.json()["result"]["speakers"] if s["id"] == kennedy).items()
    txt = requests.get(f"{job_url}/result", params={"format": "txt"}, timeout=30).text
    assert "Kennedy: And so" in txt and txt.count(":") >= 3
    assert "<v Kennedy>" in requests.get(f"{job_url}/result", params={"format": "vtt"}, timeout=30).text
    assert "Kennedy: " in requests.get(f"{job_url}/result", params={"format": "srt"}, timeout=30).text
    job = Job.objects.get(pk=result["job_id"])
    assert "Kennedy: And so" in media_file(job.result_text_path).read_text()
    assert job.speaker_count == 2

    refused = requests.put(f"{job_url}/speakers", json={"names": {"SPEAKER_9": "X"}}, timeout=30)
    assert refused.status_code == 422 and "SPEAKER_1, SPEAKER_2" in refused.json()["detail"]
    too_long = requests.put(f"{job_url}/speakers", json={"names": {kennedy: "x" * 101}}, timeout=30)
    assert too_long.status_code == 422
    assert Job.objects.get(pk=result["job_id"]).speaker_names == {kennedy: "Kennedy"}


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_one_voice_gives_one_speaker_and_silence_gives_none(service, files):
    one = post_file(service, files["en-1"], language="en", diarize=True).json()
    assert [s["id"] for s in one["speakers"]] == ["SPEAKER_1"]
    silent = post_file(service, files["silence"], language="en", diarize=True, remove_silence=False)
    assert silent.status_code == 200 and silent.json()["speakers"] == [] and silent.json()["text"] == ""


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_russian_short_turns(service, files, recordings):
    result = post_file(service, files["ru-2"], language="ru", model="base", diarize=True).json()
    words = [w for s in result["segments"] for w in s["words"]]
    score = conversations.word_speaker_error(words, recordings["ru-2"][1])
    assert score["speakers_found"] == 2 and score["error"] <= 0.15


def _data_url(samples: np.ndarray, path) -> str:
    conversations.write(samples, path)
    return "data:audio/wav;base64," + base64.b64encode(path.read_bytes()).decode()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_openai_client_gets_diarized_json_named_by_a_known_voice(service, tmp_path):
    reader = conversations.pieces(conversations.clip("multilingual.mp3", 0, 30.0), shortest=5.0)
    samples, truth = conversations.conversation(
        [("reader", reader[0]), ("jfk", conversations.clip("jfk.flac")), ("reader", reader[1])])
    recording = conversations.write(samples, tmp_path / "talk.wav")
    client = openai.OpenAI(base_url=f"{service}/v1", api_key="unused", max_retries=0, timeout=300)
    with open(recording, "rb") as fh:
        result = client.audio.transcriptions.create(
            model="whisper-1", file=fh, language="en", response_format="diarized_json",
            known_speaker_names=["Reader"],
            known_speaker_references=[_data_url(reader[2], tmp_path / "reader.wav")])  # unheard in the talk
    assert result.task == "transcribe" and result.segments
    assert all(s.type == "transcript.text.segment" for s in result.segments)
    by_speaker = {s.speaker for s in result.segments}
    assert by_speaker == {"Reader", "A"}
    kennedy = [s for s in result.segments if "fellow" in s.text.lower()]
    assert kennedy and kennedy[0].speaker == "A"
    assert result.segments[0].speaker == "Reader"
    with open(recording, "rb") as fh, pytest.raises(openai.BadRequestError, match="data URL"):
        client.audio.transcriptions.create(model="whisper-1", file=fh, response_format="diarized_json",
                                           known_speaker_names=["Reader"], known_speaker_references=["hello"])
    plain = requests.post(f"{service}/v1/audio/transcriptions", files={"file": ("talk.wav", recording.read_bytes())},
                          data={"response_format": "diarized_json", "known_speaker_names": "Reader"}, timeout=60)
    assert plain.status_code == 400 and "known_speaker_names[]" in plain.json()["error"]["message"]
    assert Job.objects.count() == 1  # the refused requests stored nothing
    silent = np.zeros(16000 * 5, dtype=np.float32)
    with open(recording, "rb") as fh, pytest.raises(openai.BadRequestError, match="'Quiet' has no speech"):
        client.audio.transcriptions.create(model="whisper-1", file=fh, response_format="diarized_json",
                                           known_speaker_names=["Quiet"],
                                           known_speaker_references=[_data_url(silent, tmp_path / "quiet.wav")])


@pytest.mark.django_db(transaction=True)
def test_the_command_line_diarizes(files, tmp_path):
    call_command("transcribe", str(files["en-2"]), "--language", "en", "--diarize", "--format", "txt,vtt",
                 "--output-dir", str(tmp_path), stdout=io.StringIO(), stderr=io.StringIO())
    txt = (tmp_path / "en-2.txt").read_text()
    assert txt.startswith("SPEAKER_1: ") and "\n\nSPEAKER_2: " in txt
    assert "<v SPEAKER_2>" in (tmp_path / "en-2.vtt").read_text()
    err = io.StringIO()
    with pytest.raises(CommandError, match="1 of 1 file"):
        call_command("transcribe", str(files["en-2"]), "--num-speakers", "2", stdout=io.StringIO(), stderr=err)
    assert "num_speakers counts speakers: it needs diarize=true" in err.getvalue()


# --- installing the backends -----------------------------------------------------------------------


@pytest.mark.django_db
def test_backends_install_staged_and_the_missing_one_is_refused_clearly(tmp_path, client, clips, settings):
    (tmp_path / "models").mkdir()
    for whisper in Path(settings.MODELS_DIR).glob("whisper-*"):  # the Whisper models, not the speakers
        (tmp_path / "models" / whisper.name).symlink_to(whisper)
    with override_settings(MODELS_DIR=tmp_path / "models", DIARIZATION_BACKEND="auto"):
        assert not speakers.get("resemblyzer").installed()
        with open(clips["flac"], "rb") as fh:
            resp = client.post("/transcribe", {"file": fh, "language": "en", "diarize": "true"})
        assert resp.status_code == 422 and "install_diarization resemblyzer" in resp.json()["detail"]

        call_command("install_diarization", "resemblyzer", stdout=io.StringIO())
        assert (tmp_path / "models" / "speakers-resemblyzer" / "ge2e.npz").is_file()
        assert not any(p.name.startswith(".install") for p in (tmp_path / "models").iterdir())
        bad = tmp_path / "bad.pt"
        bad.write_bytes(b"not a checkpoint")
        with pytest.raises(CommandError, match="cannot be read|not a legacy"):
            call_command("install_diarization", "resemblyzer", "--from-file", str(bad), stdout=io.StringIO())
        assert speakers.get("resemblyzer").installed()  # the failed install left the old one

        with pytest.raises(CommandError, match="no config.yaml"):
            call_command("install_diarization", "pyannote", "--from-dir", str(tmp_path), stdout=io.StringIO())
        pipeline = tmp_path / "pipeline"
        pipeline.mkdir()
        (pipeline / "config.yaml").write_text("pipeline:\n  name: pyannote.audio.pipelines.SpeakerDiarization\n")
        call_command("install_diarization", "pyannote", "--from-dir", str(pipeline), stdout=io.StringIO())
        assert (tmp_path / "models" / "speakers-pyannote" / "config.yaml").is_file()

        listing = {b["name"]: b for b in client.get("/models").json()["diarization"]}
        assert listing["resemblyzer"]["installed"] and listing["resemblyzer"]["default"]
        assert not listing["pyannote"]["installed"] and "pip install pyannote.audio" in listing["pyannote"]["missing"]
        with override_settings(DIARIZATION_BACKEND="pyannote"), open(clips["flac"], "rb") as fh:
            resp = client.post("/transcribe", {"file": fh, "language": "en", "diarize": "true"})
        assert resp.status_code == 422 and "pip install pyannote.audio" in resp.json()["detail"]
    assert not Job.objects.exists()


def test_the_hub_install_says_when_the_hub_cannot_be_reached(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with override_settings(MODELS_DIR=tmp_path), pytest.raises(CommandError, match="cannot be reached"):
        call_command("install_diarization", "pyannote", "--token", "hf_x", stdout=io.StringIO())
    assert not any(tmp_path.iterdir())


def test_a_long_recording_is_clustered_from_a_sample(recordings, monkeypatch):
    """Over MAX_CLUSTERED stretches, a sample is clustered and the rest placed: same answer here."""
    from transcription.speakers import resemblyzer

    samples, truth, _ = recordings["en-4"]
    monkeypatch.setattr(resemblyzer, "MAX_CLUSTERED", 40)
    found = speakers.get("resemblyzer").diarize(samples, Count())
    score = conversations.word_speaker_error(_chunks(truth, found), truth)
    assert score["speakers_found"] == 4 and score["error"] <= 0.05


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_batch_diarizes_every_file(service, files):
    with open(files["en-2"], "rb") as two, open(files["en-1"], "rb") as one:
        resp = requests.post(f"{service}/transcribe/batch",
                             files=[("files", ("two.wav", two)), ("files", ("one.wav", one))],
                             data={"language": "en", "diarize": "true", "max_speakers": "3"}, timeout=60)
    assert resp.status_code == 202, resp.text
    jobs = {j["file"]: Job.objects.get(pk=j["job_id"]) for j in resp.json()["jobs"]}
    from transcription.services import wait_for
    counts = {name: wait_for(job, 300).speaker_count for name, job in jobs.items()}
    assert counts == {"two.wav": 2, "one.wav": 1}
    with open(files["en-2"], "rb") as two:
        refused = requests.post(f"{service}/transcribe/batch", files=[("files", ("two.wav", two))],
                                data={"diarize": "true", "num_speakers": "0"}, timeout=60)
    assert refused.status_code == 422 and "num_speakers" in refused.text
