#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""An iommufd page fault handler on iopfd's binary fault stream.

    python3 handler.py --url http://127.0.0.1:8080 --ctx CTX --token TOKEN --fault FAULT_ID
                       [--invalid-above ADDR] [--count N] [--quiet]

Opens GET /v1/contexts/CTX/faults/FAULT_ID/stream with the subprotocol
`iopf.v1.uapi`: the daemon sends binary frames of whole groups of 40-byte
`struct iommu_hwpt_pgfault` records (the last record of a group has
IOMMU_PGFAULT_FLAGS_LAST_PAGE); the handler answers each frame with one
binary frame of 8-byte `struct iommu_hwpt_page_response {cookie, code}`
entries (one write() on the kernel's fault fd) and checks the daemon's
`{"type":"write","bytes":B}` reply. Groups whose first page is at or above
--invalid-above are answered INVALID, the others SUCCESS. Needs the Python
standard library and the `websockets` package. See README.md.
"""
import argparse
import asyncio
import json
import struct
import sys
from urllib.parse import quote, urlsplit

import websockets

# struct iommu_hwpt_pgfault: flags, dev_id, pasid, grpid, perm, __reserved, addr, length, cookie
PGFAULT = struct.Struct("<IIIIIIQII")
assert PGFAULT.size == 40
# struct iommu_hwpt_page_response: cookie, code
RESPONSE = struct.Struct("<II")
assert RESPONSE.size == 8

PGFAULT_FLAGS_PASID_VALID = 1 << 0
PGFAULT_FLAGS_LAST_PAGE = 1 << 1
PAGE_RESP_SUCCESS = 0
PAGE_RESP_INVALID = 1


def groups_of(frame):
    """Split a binary frame into groups: lists of (flags, dev_id, pasid, grpid, perm, reserved, addr, length, cookie)."""
    if len(frame) % PGFAULT.size:
        raise ValueError(f"a binary frame of {len(frame)} bytes is not whole records")
    group = []
    for rec in PGFAULT.iter_unpack(frame):
        group.append(rec)
        if rec[0] & PGFAULT_FLAGS_LAST_PAGE:
            yield group
            group = []
    if group:
        raise ValueError("a binary frame ends inside a group")


async def serve(args):
    u = urlsplit(args.url if "://" in args.url else "http://" + args.url)
    if u.scheme not in ("http", "ws"):
        raise SystemExit(f"{args.url}: only http:// (no TLS)")
    uri = f"ws://{u.netloc}{u.path.rstrip('/')}/v1/contexts/{args.ctx}/faults/{args.fault}/stream?token={quote(args.token)}"
    answered = invalid = 0
    async with websockets.connect(uri, subprotocols=["iopf.v1.uapi"], max_size=None, compression=None) as ws:
        if ws.subprotocol != "iopf.v1.uapi":
            raise SystemExit(f"the daemon chose subprotocol {ws.subprotocol!r}")
        print("ready", flush=True)
        async for msg in ws:
            if isinstance(msg, str):
                note = json.loads(msg)
                if note.get("type") == "write" and "errno" in note:
                    print(f"write refused at entry {note['index']}: {note['errno']}", file=sys.stderr, flush=True)
                elif note.get("type") not in ("write", "hello") and not args.quiet:
                    print(f"notice {msg}", flush=True)
                continue
            out = bytearray()
            for group in groups_of(msg):
                first = group[0]
                flags, _dev, pasid, grpid, _perm, _res, addr, _len, cookie = first
                bad = args.invalid_above is not None and addr >= args.invalid_above
                out += RESPONSE.pack(cookie, PAGE_RESP_INVALID if bad else PAGE_RESP_SUCCESS)
                answered += 1
                invalid += bad
                if not args.quiet:
                    pasid = pasid if flags & PGFAULT_FLAGS_PASID_VALID else 0
                    code = "invalid" if bad else "success"
                    print(f"group cookie={cookie} pasid={pasid} grpid={grpid} addr={addr:#x} pages={len(group)} code={code}", flush=True)
            await ws.send(bytes(out))
            if args.count is not None and answered >= args.count:
                break
    print(f"done groups={answered} invalid={invalid}", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--ctx", type=int, required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--fault", type=int, required=True)
    p.add_argument("--invalid-above", type=lambda s: int(s, 0), default=None)
    p.add_argument("--count", type=int, default=None, help="exit after answering this many groups")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass  # closing the stream: the daemon redelivers what was not answered


if __name__ == "__main__":
    main()
