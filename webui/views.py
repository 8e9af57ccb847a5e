"""Web pages. The upload page here is the simple one; the full UI is its own issue."""
from django.shortcuts import render

from transcription import services
from transcription.uploads import ALLOWED_EXTENSIONS


def index(request):
    listing = services.models_listing()
    return render(request, "webui/index.html", {
        "models": [m for m in listing["models"] if m["installed"]],
        "default_model": listing["default"],
        "accept": ",".join(ALLOWED_EXTENSIONS),
    })
