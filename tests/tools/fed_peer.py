#!/usr/bin/env python3
"""A federation peer for tests: speaks what a controller's federation
listener expects (TLS 1.3, ALPN ztr-fed/1, 4-byte big-endian length + JSON
frames) in ways a real controller never would, to show the refusals.

  accept --addr HOST:PORT --token-file F [--omit-token] [--tamper]
         [--count N] [--trust-domain TD]
      Dials like `controller federation accept`, trusting only the CA the
      token pins, and prints each answer (one JSON line per attempt).
      --omit-token sends no acceptance_token; --tamper flips one character
      of the secret (a typo); --count repeats the attempt.
  link --addr HOST:PORT --ca PEM --cert PEM --key PEM [--send JSON-FILE]
         [--hold SECONDS]
      Presents a client certificate on the federation listener and sends
      one heartbeat; prints the answer, or the handshake's failure. --send
      then sends the message in JSON-FILE (e.g. a forged fed_grants) and
      --hold keeps the link open that long, answering heartbeats.
  relay --to HOST:PORT --port-file F
      Forwards the first connection on a fresh loopback port (written to F)
      to HOST:PORT, then stops listening: what "reachable for the accept,
      unreachable afterwards" looks like.

Loopback only (tests/README.md)."""
import argparse
import base64
import json
import socket
import ssl
import struct
import sys
import threading
import time

ALPN = "ztr-fed/1"


def b64d(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64e(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def split_addr(addr):
    host, port = addr.rsplit(":", 1)
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
        sys.exit("fed_peer: loopback addresses only")
    return host.strip("[]"), int(port)


def context(cafile=None, cadata=None, cert=None, key=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols([ALPN])
    # The peer is named by its SPIFFE ID (a URI SAN), not a host name; the
    # chain is still verified against the CA given.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=cafile, cadata=cadata)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def send(sock, msg):
    data = json.dumps(msg).encode()
    sock.sendall(struct.pack(">I", len(data)) + data)


def recv(sock):
    header = b""
    while len(header) < 4:
        chunk = sock.recv(4 - len(header))
        if not chunk:
            return None
        header += chunk
    (length,) = struct.unpack(">I", header)
    data = b""
    while len(data) < length:
        chunk = sock.recv(length - len(data))
        if not chunk:
            return None
        data += chunk
    return json.loads(data)


def cmd_accept(args):
    token = open(args.token_file).read().strip()
    prefix, peer_id, secret, td, ca = token.split(".")
    pinned = ssl.DER_cert_to_PEM_cert(b64d(ca))
    if args.tamper:
        secret = ("B" if secret[0] != "B" else "C") + secret[1:]
    bundle = open(args.bundle).read() if args.bundle else pinned
    status = 0
    for _ in range(args.count):
        msg = {"type": "fed_accept", "peer_id": peer_id,
               "trust_domain": args.trust_domain, "bundle": bundle, "bundle_version": 1}
        if not args.omit_token:
            msg["acceptance_token"] = secret
        host, port = split_addr(args.addr)
        try:
            with socket.create_connection((host, port), timeout=10) as raw:
                with context(cadata=pinned).wrap_socket(raw) as sock:
                    peer = dict(x for x in sock.getpeercert().get("subjectAltName", ()))
                    if peer.get("URI") != "spiffe://%s/controller" % b64d(td).decode():
                        sys.exit("fed_peer: unexpected peer %r" % peer)
                    send(sock, msg)
                    reply = recv(sock)
        except (OSError, ssl.SSLError) as e:
            reply = {"type": "closed", "message": str(e)}
        print(json.dumps(reply), flush=True)
        if not reply or reply.get("type") != "fed_accepted":
            status = 1
    return status


def cmd_link(args):
    host, port = split_addr(args.addr)
    try:
        with socket.create_connection((host, port), timeout=10) as raw:
            with context(cafile=args.ca, cert=args.cert, key=args.key).wrap_socket(raw) as sock:
                send(sock, {"type": "fed_heartbeat", "seq": 1, "bundle_version": 1,
                            "peer_bundle_version": 0})
                reply = recv(sock)
                # The other side may tell its grants before it answers.
                for _ in range(4):
                    if not reply or reply.get("type") != "fed_grants":
                        break
                    reply = recv(sock)
                print(json.dumps(reply or {"type": "closed", "message": "connection closed"}))
                ok = reply and reply.get("type") == "fed_heartbeat_ack"
                if ok and args.send:
                    send(sock, json.load(open(args.send)))
                deadline = time.monotonic() + args.hold
                seq = 1
                while ok and time.monotonic() < deadline:
                    sock.settimeout(max(0.1, deadline - time.monotonic()))
                    try:
                        msg = recv(sock)
                    except socket.timeout:
                        break
                    if msg is None:
                        break
                    if msg.get("type") == "fed_heartbeat":
                        seq += 1
                        send(sock, {"type": "fed_heartbeat_ack", "seq": msg["seq"],
                                    "bundle_version": 1, "peer_bundle_version": 0})
                return 0 if ok else 1
    except (OSError, ssl.SSLError) as e:
        print(json.dumps({"type": "closed", "message": str(e)}))
        return 1


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def cmd_relay(args):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    with open(args.port_file, "w") as f:
        f.write("%d\n" % listener.getsockname()[1])
    client, _ = listener.accept()
    listener.close()
    upstream = socket.create_connection(split_addr(args.to))
    t = threading.Thread(target=pipe, args=(upstream, client))
    t.start()
    pipe(client, upstream)
    t.join()
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("accept")
    a.add_argument("--addr", required=True)
    a.add_argument("--token-file", required=True)
    a.add_argument("--omit-token", action="store_true")
    a.add_argument("--tamper", action="store_true")
    a.add_argument("--count", type=int, default=1)
    a.add_argument("--trust-domain", default="b.example")
    a.add_argument("--bundle")
    lk = sub.add_parser("link")
    lk.add_argument("--addr", required=True)
    lk.add_argument("--ca", required=True)
    lk.add_argument("--cert", required=True)
    lk.add_argument("--key", required=True)
    lk.add_argument("--send")
    lk.add_argument("--hold", type=float, default=0)
    r = sub.add_parser("relay")
    r.add_argument("--to", required=True)
    r.add_argument("--port-file", required=True)
    args = p.parse_args()
    return {"accept": cmd_accept, "link": cmd_link, "relay": cmd_relay}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
