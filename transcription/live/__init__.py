"""Live transcription: a microphone's audio decoded as it comes (the /live page, the /v1/live
WebSocket), and kept as an ordinary job when the session ends.

- consumer.py (web process, ASGI): the WebSocket; checks, limits, audio in, messages out.
- session.py (a `run_live` worker): decodes the growing recording (agreement.py) and, at the end,
  turns the recording into a job.
- files.py: what the two share, under MEDIA_ROOT (the audio, the messages, the end request).
- queue.py: the live sessions' own Huey queue, so a long file never delays a live session."""
