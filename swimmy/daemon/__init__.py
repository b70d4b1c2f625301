"""The running daemon: its lifecycle (lifecycle.py: `Daemon`), the services it builds, health, the control
commands, the loop watch and the locks. Imports every layer below it; only the CLI imports it.

Nothing is imported here, so the CLI's light commands (`swimmy status`, `tail`) can use one module of this
package without loading the daemon.
"""
