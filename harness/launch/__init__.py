"""Launchers: how an engine process or container is started, watched and stopped."""

from harness.launch.base import EngineStartError, Launcher, RunningEngine

__all__ = ["EngineStartError", "Launcher", "RunningEngine"]
