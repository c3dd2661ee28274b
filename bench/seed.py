#!/usr/bin/env python3
"""Seeds the benchmark's data through the systems' own HTTP APIs.

Nothing is written to a database directly: this service wraps every namespace's data key under
its KEK and encrypts every name and value, so only the service itself can write its rows.

  seed.py svc  --url URL --token T --namespaces N --secrets S --out KEYS_FILE [--etags FILE]
      creates N namespaces with POST /namespaces/bulk (500 per call, several calls in flight),
      then gives each S secrets of VALUE_BYTES bytes (KEY_0 .. KEY_<S-1>) with one
      PATCH /namespaces/{accessKey} per namespace (a JSON merge patch: one transaction), and
      writes their access keys to KEYS_FILE (mode 0600), one per line. With --etags, also
      writes "<access key> <ETag>" per line to FILE (mode 0600): each namespace's entity tag as
      its PATCH answered it, for the conditional READ.
  seed.py bao  --url URL --token T --namespaces N --secrets S
      writes N KV v2 secrets ns-1 .. ns-N of S fields each (POST /v1/secret/data/ns-<i>).

Many keep-alive HTTP/1.1 connections on one asyncio loop: the client costs far less CPU than
the server it feeds, which matters on a small machine. Prints one JSON line of timings.
"""

import argparse
import asyncio
import base64
import json
import os
import random
import time
from urllib.parse import urlsplit


class Connection:
    """One keep-alive HTTP/1.1 connection; reopened after an error."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None
        self.etag = None  # the ETag of the last answer, if it had one

    async def _open(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, method, path, headers, body=b""):
        if self.writer is None:
            await self._open()
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("connection closed")
        status = int(status_line.split()[1])
        length, chunked, close = 0, False, False
        self.etag = None
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection" and value.lower() == "close":
                close = True
            elif name == "etag":
                self.etag = value
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readline()
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readline()
            data = b"".join(parts)
        else:
            data = await self.reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, data


async def call(conn, method, path, headers, body=b"", ok=(200, 201, 204), attempts=5):
    """One request, retried on a broken connection or a 5xx (the callers' requests are
    idempotent, or harmless to repeat)."""
    last = None
    for attempt in range(attempts):
        try:
            status, data = await conn.request(method, path, headers, body)
            if status in ok:
                return data
            last = f"HTTP {status}: {data[:200]!r}"
            if status < 500:
                break
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError) as e:
            conn.close()
            last = repr(e)
        await asyncio.sleep(0.2 * (attempt + 1))
    raise RuntimeError(f"{method} {path.split('/')[1]}: {last}")


def value_pool(size, length):
    """Random printable values (base64url of OS randomness), `length` characters each."""
    raw = (length * 3) // 4 + 3
    return [base64.urlsafe_b64encode(os.urandom(raw)).decode()[:length] for _ in range(size)]


async def run_pool(conns, items, work):
    """Runs `work(conn, item)` for every item, one worker per connection."""
    queue = iter(items)
    done = 0

    async def worker(conn):
        nonlocal done
        for item in queue:
            await work(conn, item)
            done += 1

    await asyncio.gather(*(worker(c) for c in conns))
    return done


async def seed_svc(args):
    url = urlsplit(args.url)
    conns = [Connection(url.hostname, url.port) for _ in range(args.conns)]
    auth = {"Authorization": f"Bearer {args.token}"}
    json_headers = {**auth, "Content-Type": "application/json"}
    keys = []
    t0 = time.monotonic()
    batches = [min(500, args.namespaces - i) for i in range(0, args.namespaces, 500)]

    async def create(conn, count):
        body = json.dumps({"count": count}).encode()
        data = await call(conn, "POST", "/namespaces/bulk", json_headers, body, attempts=1)
        keys.extend(json.loads(data)["accessKeys"])

    # Each bulk call is one transaction of up to 500 rows; a few in flight keep the store busy.
    await run_pool(conns[: max(1, min(args.create_conns, len(conns)))], batches, create)
    t_created = time.monotonic()
    if len(keys) != args.namespaces:
        raise SystemExit(f"created {len(keys)} namespaces, wanted {args.namespaces}")

    values = value_pool(4096, args.value_bytes)
    patch_headers = {**auth, "Content-Type": "application/merge-patch+json"}
    rng = random.Random(1)
    etags = {}

    async def fill(conn, key):
        patch = {f"KEY_{k}": rng.choice(values) for k in range(args.secrets)}
        await call(conn, "PATCH", f"/namespaces/{key}", patch_headers, json.dumps(patch).encode())
        etags[key] = conn.etag

    if args.secrets > 0:
        await run_pool(conns, keys, fill)
    t_filled = time.monotonic()
    for c in conns:
        c.close()
    # The access keys open the namespaces: readable by their owner only.
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when the file was there already
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(keys) + "\n")
    if args.etags:
        if args.secrets == 0 or any(etags.get(k) is None for k in keys):
            raise SystemExit("--etags needs --secrets > 0: the tags come from the PATCH answers")
        fd = os.open(args.etags, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("".join(f"{k} {etags[k]}\n" for k in keys))
    create_s = t_created - t0
    fill_s = t_filled - t_created
    print(json.dumps({
        "namespaces": len(keys), "secrets_per_namespace": args.secrets,
        "create_s": round(create_s, 2), "fill_s": round(fill_s, 2),
        "namespaces_per_s": round(len(keys) / create_s) if create_s else None,
        "patches_per_s": round(len(keys) / fill_s) if args.secrets and fill_s else None,
        "secrets_per_s": round(len(keys) * args.secrets / fill_s) if args.secrets and fill_s else None,
    }), flush=True)


async def seed_bao(args):
    url = urlsplit(args.url)
    conns = [Connection(url.hostname, url.port) for _ in range(args.conns)]
    headers = {"X-Vault-Token": args.token, "Content-Type": "application/json"}
    values = value_pool(4096, args.value_bytes)
    rng = random.Random(1)

    async def put(conn, i):
        body = {"data": {f"KEY_{k}": rng.choice(values) for k in range(args.secrets)}}
        await call(conn, "POST", f"/v1/{args.mount}/data/ns-{i}", headers, json.dumps(body).encode())

    t0 = time.monotonic()
    n = await run_pool(conns, range(1, args.namespaces + 1), put)
    elapsed = time.monotonic() - t0
    for c in conns:
        c.close()
    print(json.dumps({"paths": n, "fields": args.secrets, "fill_s": round(elapsed, 2),
                      "paths_per_s": round(n / elapsed) if elapsed else None}), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("system", choices=["svc", "bao"])
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--namespaces", type=int, required=True)
    p.add_argument("--secrets", type=int, default=10)
    p.add_argument("--value-bytes", type=int, default=32)
    p.add_argument("--conns", type=int, default=32)
    p.add_argument("--create-conns", type=int, default=4)
    p.add_argument("--mount", default="secret")
    p.add_argument("--out")
    p.add_argument("--etags")
    args = p.parse_args()
    if args.system == "svc":
        if not args.out:
            p.error("svc needs --out")
        asyncio.run(seed_svc(args))
    else:
        asyncio.run(seed_bao(args))


if __name__ == "__main__":
    main()
