"""A Python service talking to the Rust event bus the way one in the wild would.

It uses nothing but redis-py and the json module: it publishes the plain shape other event
buses use, ``json.dumps({"type", "data", "timestamp", "id"})``, and reads the bus's CloudEvents
envelopes with ``pubsub.listen()`` and ``json.loads``.

Usage (run by tests/interop_redis.rs with the venv of tests/support/python.rs):

    peer.py publish URL CHANNEL EVENTS_JSON
        EVENTS_JSON is a JSON list of {"type", "data", "timestamp", "id"} objects (with
        "traceparent" and "tracestate" where given), published one by one with json.dumps;
        prints one line per message:
        {"published": <id>, "receivers": <what PUBLISH returned>}

    peer.py listen URL CHANNEL COUNT
        subscribes, prints "ready" once the server confirmed the subscription, then prints what
        it read from each of COUNT messages as one JSON line (type, data, id, time, source,
        specversion, dataversion, channel, and the time parsed by datetime.fromisoformat as
        time_utc_offset_seconds / time_epoch_micros), then "done".

    peer.py xadd URL STREAM EVENTS_JSON
        appends each object of the JSON list (the plain shape or a CloudEvents envelope) to the
        durable stream with XADD STREAM * envelope <json.dumps(event)>; prints one line each:
        {"appended": <id>, "entry": <entry id>}

    peer.py xreadgroup URL STREAM GROUP COUNT
        creates GROUP from the stream's start (if missing), reads COUNT entries with
        XREADGROUP, acknowledges each with XACK after printing what it read (entry, type, data,
        id, source, specversion), then prints "done".

Every step is bounded: the socket times out after 10 s of silence and the whole run after 30 s.
"""

import json
import signal
import sys
from datetime import datetime

import redis

SOCKET_TIMEOUT = 10
OVERALL_TIMEOUT = 30


def out(value):
    print(value if isinstance(value, str) else json.dumps(value), flush=True)


def publish(client, channel, events):
    for event in events:
        plain = {
            "type": event["type"],
            "data": event["data"],
            "timestamp": event["timestamp"],
            "id": event["id"],
        }
        # A service traced with OpenTelemetry adds its W3C trace context.
        for name in ("traceparent", "tracestate"):
            if name in event:
                plain[name] = event[name]
        message = json.dumps(plain)
        receivers = client.publish(channel, message)
        out({"published": event["id"], "receivers": receivers})


def listen(client, channel, count):
    pubsub = client.pubsub()
    pubsub.subscribe(channel)
    seen = 0
    for message in pubsub.listen():
        if message["type"] == "subscribe":
            out("ready")
            continue
        if message["type"] != "message":
            continue
        event = json.loads(message["data"])
        time = datetime.fromisoformat(event["time"])
        offset = time.utcoffset()
        out(
            {
                "channel": message["channel"].decode(),
                "type": event["type"],
                "data": event["data"],
                "id": event["id"],
                "time": event["time"],
                "time_utc_offset_seconds": None if offset is None else offset.total_seconds(),
                "time_epoch_micros": round(time.timestamp() * 1_000_000),
                "source": event.get("source"),
                "specversion": event.get("specversion"),
                "dataversion": event.get("dataversion"),
            }
        )
        seen += 1
        if seen == count:
            break
    pubsub.close()
    out("done")


def xadd(client, stream, events):
    for event in events:
        entry = client.xadd(stream, {"envelope": json.dumps(event)})
        out({"appended": event["id"], "entry": entry.decode()})


def xreadgroup(client, stream, group, count):
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise
    seen = 0
    while seen < count:
        reply = client.xreadgroup(group, "python-1", {stream: ">"}, count=count, block=5000)
        if not reply:
            sys.exit(f"read {seen} of {count} entries, then nothing for 5 s")
        for _stream, entries in reply:
            for entry_id, fields in entries:
                event = json.loads(fields[b"envelope"])
                out(
                    {
                        "entry": entry_id.decode(),
                        "type": event["type"],
                        "data": event["data"],
                        "id": event["id"],
                        "source": event.get("source"),
                        "specversion": event.get("specversion"),
                    }
                )
                client.xack(stream, group, entry_id)
                seen += 1
    out("done")


def main(argv):
    signal.alarm(OVERALL_TIMEOUT)
    mode, url, channel = argv[1], argv[2], argv[3]
    client = redis.Redis.from_url(
        url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT
    )
    if mode == "publish":
        publish(client, channel, json.loads(argv[4]))
    elif mode == "listen":
        listen(client, channel, int(argv[4]))
    elif mode == "xadd":
        xadd(client, channel, json.loads(argv[4]))
    elif mode == "xreadgroup":
        xreadgroup(client, channel, argv[4], int(argv[5]))
    else:
        sys.exit(f"unknown mode {mode!r}: expected publish, listen, xadd or xreadgroup")
    client.close()


if __name__ == "__main__":
    main(sys.argv)
