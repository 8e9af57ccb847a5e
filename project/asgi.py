"""ASGI entry point (uvicorn project.asgi:application): the site and API over HTTP, live sessions
over WebSocket (/v1/live)."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_app = get_asgi_application()  # sets Django up before the imports below

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from transcription.live.consumer import LiveConsumer  # noqa: E402
from transcription.uploads import UploadCap  # noqa: E402

application = ProtocolTypeRouter({
    "http": UploadCap(django_app),
    "websocket": AuthMiddlewareStack(URLRouter([path("v1/live", LiveConsumer.as_asgi())])),
})
