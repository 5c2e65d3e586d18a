from __future__ import annotations

from django.urls import path

from voices.views import clip_audio

app_name = "voices"

urlpatterns = [
    path("clips/<str:token>.mp3", clip_audio, name="clip"),
]
