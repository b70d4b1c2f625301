"""The structured event stream: envelope, queue and emit, writer, rotation, log bridge."""

from swimmy.telemetry.envelope import SCHEMA_VERSION, SEVERITIES, Encoder
from swimmy.telemetry.queue import Emit, EventQueue
from swimmy.telemetry.writer import TelemetryWriter

__all__ = ["SCHEMA_VERSION", "SEVERITIES", "Emit", "Encoder", "EventQueue", "TelemetryWriter"]
