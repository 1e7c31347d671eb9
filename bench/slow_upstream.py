#!/usr/bin/env python3
"""A slow HTTP/1.1 upstream for bench/mirror_vs_nginx_envoy.sh: no dependencies.

Answers every request with a fixed JSON body after --delay seconds, on
keep-alive connections (Content-Length framing, pipelined requests are
answered in order). With --stall it accepts connections and reads every
request but never answers: a shadow that hangs.

    bench/slow_upstream.py --port 18103 --delay 1
    bench/slow_upstream.py --port 18104 --stall

Prints {"message":"listening","addr":"HOST:PORT"} on stdout when it accepts.
"""

import argparse
import asyncio
import json
import sys

BODY = (
    b'{"id":"0196b3f2-7c1a-7e4b-9a2d-3f5c8e1d2b4a","status":"accepted",'
    b'"to":"+447700900123","from":"Acme","encoding":"GSM-7","segments":1,'
    b'"created_at":"2026-05-01T12:00:00.123Z","reference":null}'
)
REASONS = {200: "OK", 201: "Created", 202: "Accepted"}


def parse_head(head: bytes):
    """Content length and whether the client asked to close."""
    length, close = 0, False
    lines = head.split(b"\r\n")
    if lines and lines[0].endswith(b"HTTP/1.0"):
        close = True
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            close = value == b"close" or (close and value != b"keep-alive")
    return length, close


async def serve(reader, writer, args, response):
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            length, close = parse_head(head)
            if length:
                await reader.readexactly(length)
            if args.stall:
                continue  # read on (so a closed connection is noticed), never answer
            if args.delay:
                await asyncio.sleep(args.delay)
            writer.write(response)
            await writer.drain()
            if close:
                return
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    p.add_argument("--stall", action="store_true", help="read requests, never answer")
    p.add_argument("--status", type=int, default=202)
    args = p.parse_args()
    response = (
        f"HTTP/1.1 {args.status} {REASONS.get(args.status, 'OK')}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n"
        "Connection: keep-alive\r\n\r\n"
    ).encode() + BODY
    server = await asyncio.start_server(
        lambda r, w: serve(r, w, args, response), args.host, args.port, backlog=1024
    )
    addr = server.sockets[0].getsockname()
    print(json.dumps({"message": "listening", "addr": f"{addr[0]}:{addr[1]}"}), flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
