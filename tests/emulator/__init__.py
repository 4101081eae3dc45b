"""A local stand-in for the iShareRadio MQTT portal's Mgmt REST API (FastAPI + SQLite).

`emulator.app.create_app` builds the ASGI app, `emulator.serve` (also runnable as a script)
starts it with uvicorn, `emulator.control.EmulatorControl` drives the `/_emulator` control surface.
"""
