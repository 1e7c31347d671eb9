#!/usr/bin/env python3
"""Writes a synthetic mirror-proxy capture (JSONL, compare/schemas/capture.v1)
for benchmarks: N exchanges, each with a legacy-style primary answer
(ObjectId ids, HTTP 200, Express headers) and an orchestrator-style
candidate answer (UUIDv7 ids, 202 for submits, its own headers).

Mix: 50 % POST /v1/sms/send, 10 % POST /v1/sms/bulk (3 messages),
40 % GET /v1/sms/{id} (a ~1 KB status body with history). About
--differ-share of the exchanges (default 2 %) carry a real difference
(send: encoding and segments; bulk: accepted/rejected; status: the
status); the rest differ only by generated ids, timestamps and headers,
which the default rules explain. Phone numbers come from the fictional
+447700900xxx range; there are no credentials.

    bench/gen_capture.py N OUT.jsonl [--seed 1] [--differ-share 0.02]

Dependency-free; deterministic for a given seed.
"""

import argparse
import json
import random
import sys

# Placeholders survive json.dumps unchanged (no characters to escape).
FIELDS = ("TS", "CID", "PHONE", "PID", "CID2", "PCREATED", "CCREATED", "REF", "CODE",
          "PID1", "PID2", "CID1", "CID3")


def ph(name):
    return f"@@{name}@@"


def status_body(id_, created, status):
    return {
        "id": id_, "status": status, "to": ph("PHONE"), "from": "Acme",
        "encoding": "GSM-7", "segments": 2, "created_at": created,
        "updated_at": "2026-05-01T12:00:04.870Z", "reference": ph("REF"),
        "callback_url": "https://hooks.acme.example/sms/status",
        "validity_period": 3600,
        "metadata": {"campaign": "spring-2026", "customer_id": "c-10442",
                     "note": "Reminder: your appointment at the Acme clinic is confirmed for "
                             "Tuesday at 10:30. Reply STOP to opt out. Questions? Call us "
                             "on the number on your card; do not reply to this message "
                             "with personal details. Thank you for choosing Acme."},
        "status_history": [
            {"status": "accepted", "at": created, "error_code": None},
            {"status": "queued", "at": "2026-05-01T12:00:00.201Z", "error_code": None},
            {"status": "sent", "at": "2026-05-01T12:00:01.512Z", "error_code": None},
            {"status": status, "at": "2026-05-01T12:00:04.870Z", "error_code": None},
        ],
    }


def send_body(id_, created, encoding, segments):
    return {"id": id_, "status": "accepted", "to": ph("PHONE"), "from": "Acme",
            "encoding": encoding, "segments": segments, "created_at": created,
            "reference": ph("REF")}


def bulk_body(ids, accepted):
    results = [{"index": i, "id": id_, "status": "accepted"} for i, id_ in enumerate(ids[:accepted])]
    results += [{"index": i, "error": {"type": "about:blank", "status": 422, "title": "invalid"}}
                for i in range(accepted, len(ids))]
    return {"accepted": accepted, "rejected": len(ids) - accepted, "results": results}


LEGACY_HEADERS = [["content-type", "application/json; charset=utf-8"], ["x-powered-by", "Express"],
                  ["etag", 'W/"3f2-abc"'], ["date", "Fri, 01 May 2026 12:00:05 GMT"],
                  ["x-correlation-id", ph("CID")]]
ORCH_HEADERS = [["content-type", "application/json"], ["date", "Fri, 01 May 2026 12:00:05 GMT"],
                ["x-correlation-id", ph("CID")], ["server", "orchestrator"]]
REQUEST_HEADERS = [["content-type", "application/json"], ["x-tenant-id", "acme"],
                   ["user-agent", "acme-backend/4.2"]]


def line(method, path, req_body, p_status, p_body, c_status, c_body, p_extra=(), c_extra=()):
    request = {"method": method, "path": path, "headers": REQUEST_HEADERS if req_body else REQUEST_HEADERS[1:]}
    if req_body is not None:
        request["body"] = json.dumps(req_body, separators=(",", ":"))
    value = {
        "schema_version": 1, "ts": ph("TS"), "correlation_id": ph("CID"), "request": request,
        "primary": {"status": p_status, "headers": LEGACY_HEADERS + list(p_extra),
                    "body": json.dumps(p_body, separators=(",", ":")), "latency_ms": 12.5},
        "candidate": {"status": c_status, "headers": ORCH_HEADERS + list(c_extra),
                      "body": json.dumps(c_body, separators=(",", ":")), "latency_ms": 4.1},
    }
    text = json.dumps(value, separators=(",", ":")).replace("%", "%%")
    for name in FIELDS:
        text = text.replace(ph(name), f"%({name})s")
    return text + "\n"


def templates():
    send_req = {"to": ph("PHONE"), "from": "Acme", "body": "Your Acme code is " + ph("CODE"),
                "reference": ph("REF")}
    bulk_req = {"defaults": {"from": "Acme"},
                "messages": [{"to": ph("PHONE"), "body": "Your Acme code is " + ph("CODE"), "reference": ph("REF")},
                             {"to": ph("PHONE"), "body": "Your parcel arrives today", "reference": ph("REF")},
                             {"to": ph("PHONE"), "body": "Appointment confirmed", "reference": ph("REF")}]}
    p_location = [["location", "/v1/sms/" + ph("PID")]]
    c_location = [["location", "/v1/sms/" + ph("CID2")]]
    send = lambda enc, seg: line(  # noqa: E731
        "POST", "/v1/sms/send", send_req,
        200, send_body(ph("PID"), ph("PCREATED"), "GSM-7", 1),
        202, send_body(ph("CID2"), ph("CCREATED"), enc, seg), p_location, c_location)
    bulk = lambda acc: line(  # noqa: E731
        "POST", "/v1/sms/bulk", bulk_req,
        200, bulk_body([ph("PID"), ph("PID1"), ph("PID2")], 3),
        202, bulk_body([ph("CID2"), ph("CID1"), ph("CID3")], acc))
    status = lambda st: line(  # noqa: E731
        "GET", "/v1/sms/" + ph("CID2"), None,
        200, status_body(ph("PID"), ph("PCREATED"), "delivered"),
        200, status_body(ph("CID2"), ph("CCREATED"), st))
    # (share of traffic, same template, differing template)
    return [(0.5, send("GSM-7", 1), send("UCS-2", 2)),
            (0.1, bulk(3), bulk(2)),
            (0.4, status("delivered"), status("sent"))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int)
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--differ-share", type=float, default=0.02)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    kinds = templates()
    weights = [k[0] for k in kinds]
    start_ms = 1_777_636_800_000  # 2026-05-01T12:00:00Z
    with open(args.out, "w", buffering=1 << 20) as out:
        for i in range(args.n):
            ms = start_ms + i  # one exchange per millisecond
            sec, milli = divmod(ms - start_ms, 1000)
            ts = "2026-05-01T%02d:%02d:%02d.%03dZ" % (12 + sec // 3600, sec // 60 % 60, sec % 60, milli)
            ts_c = "2026-05-01T%02d:%02d:%02d.%03dZ" % (12 + sec // 3600, sec // 60 % 60, sec % 60,
                                                         min(999, milli + rng.randrange(1, 40)))

            def object_id():
                return "%08x%016x" % (ms // 1000, rng.getrandbits(64))

            def uuid7():
                r = rng.getrandbits(74)
                return "%08x-%04x-7%03x-%04x-%012x" % (
                    ms >> 16, ms & 0xFFFF, r & 0xFFF, 0x8000 | (r >> 12) & 0x3FFF, r >> 26)

            kind = rng.choices(kinds, weights)[0]
            template = kind[2] if rng.random() < args.differ_share else kind[1]
            out.write(template % {
                "TS": ts, "CID": "%032x" % rng.getrandbits(128),
                "PHONE": "+447700900%03d" % rng.randrange(1000),
                "PID": object_id(), "PID1": object_id(), "PID2": object_id(),
                "CID2": uuid7(), "CID1": uuid7(), "CID3": uuid7(),
                "PCREATED": ts, "CCREATED": ts_c,
                "REF": "order-%d" % i, "CODE": "%06d" % rng.randrange(1_000_000),
            })
    return 0


if __name__ == "__main__":
    sys.exit(main())
