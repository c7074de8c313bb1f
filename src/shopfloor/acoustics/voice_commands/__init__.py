"""Voice commands: keyword spotting on short spoken commands, from recordings and/or synthesized speech."""

from .task import VoiceCommands

__all__ = ["VoiceCommands"]
