#!/usr/bin/env python3
"""Condenses `perf report --children --stdio -F overhead_children,overhead,sym -g none` (stdin)
into the few numbers docs/benchmarks.md discusses: the share of the server's CPU time spent in
each part of a request (inclusive, so parts nest; parts absent from the profile are left out)."""

import re
import sys

PARTS = [
    ("HTTP dispatch, whole request (actix h1 dispatcher)", r"actix_http::h1::dispatcher::Dispatcher<.*>::poll$"),
    ("handler: read_all use case (store + decrypt)", r"\{async_fn#0\}<secrets_adapters::postgres::PostgresStore, secrets_adapters::crypto::RingEnvelope"),
    ("decrypt every name and value (open_all)", r"open_all<"),
    ("  seal::open (per ciphertext: HKDF subkey + AES-GCM)", r"secrets_adapters::crypto::seal::open$"),
    ("  AES-256 key schedule + GHASH key from the HKDF output", r"UnboundKey as core::convert::From<ring::hkdf::Okm"),
    ("  SHA-256 compressions (HKDF/HMAC)", r"sha256_block_data_order$"),
    ("unwrap the namespace's data key (open_data_key)", r"open_data_key"),
    ("rows to StoredSecret (tokio-postgres Row::try_get)", r"secrets_adapters::postgres::stored_secret"),
    ("tokio-postgres connection task (socket I/O, protocol)", r"tokio_postgres::connection::Connection<S,T> as core::future::future::Future>::poll$"),
    ("per-request log line (tracing-subscriber fmt)", r"tracing_subscriber::fmt::Subscriber<.*>::event$"),
    ("JSON response (serde_json)", r"serde_json::ser::"),
    ("service token check (SHA-256 + compare)", r"ServiceTokens::accepts"),
    ("sendto syscalls (HTTP responses, queries)", r"__x64_sys_sendto$"),
    ("recvfrom/read syscalls", r"(__x64_sys_recvfrom|__x64_sys_read)$"),
    ("epoll_wait", r"__x64_sys_epoll_wait$"),
    ("kernel, all syscalls", r"entry_SYSCALL_64_after_hwframe$"),
    ("encrypt (seal::seal)", r"secrets_adapters::crypto::seal::seal$"),
    ("SQLite: every statement (sqlite3_step)", r"^sqlite3_step$"),
    ("SQLite: BEGIN IMMEDIATE / COMMIT (execute_batch)", r"rusqlite::Connection::execute_batch$"),
    ("SQLite: commit, WAL frames written and synced", r"sqlite3PagerCommitPhaseOne"),
    ("fsync", r"^fsync$"),
    ("SQLite: pages re-read after another connection wrote (readDbPage)", r"^readDbPage$"),
    ("futex (lock hand-offs, thread wake-ups)", r"__x64_sys_futex$"),
]
SELF = [
    ("malloc/free (self)", r"^(_int_malloc|_int_free|malloc|cfree@GLIBC.*|malloc_consolidate|unlink_chunk.*|__GI___libc_malloc|__libc_free)$"),
    ("memmove/memcpy (self)", r"^__memmove_"),
]

line_re = re.compile(r"^\s*([\d.]+)%\s+([\d.]+)%\s+\[[.k]\]\s+(.*?)\s*$")
rows = []
for line in sys.stdin:
    m = line_re.match(line)
    if m:
        rows.append((float(m.group(1)), float(m.group(2)), m.group(3).replace(" (inlined)", "")))

print(f"{'share of server CPU':>20}  part of the request")
for label, pattern in PARTS:
    rx = re.compile(pattern)
    best = max((c for c, _, s in rows if rx.search(s)), default=None)
    if best is not None:
        print(f"{best:>19.1f}%  {label}")
for label, pattern in SELF:
    rx = re.compile(pattern)
    total = sum(o for _, o, s in rows if rx.search(s))
    print(f"{total:>19.1f}%  {label}")
