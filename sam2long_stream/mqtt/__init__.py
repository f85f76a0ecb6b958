"""The MQTT bridge (`sam2long-stream mqtt`): a node's events, retained object and zone
state and optionally masks on an MQTT broker, with Home Assistant discovery.

`config` (broker URL, credentials, bounds; no paho), `topics` (topics, payloads, HA
discovery; no paho), `bridge` (the paho-mqtt client and the loop), `command` (the CLI).
paho-mqtt is the optional extra ``sam2long-stream[mqtt]``; only `bridge` imports it.
"""
