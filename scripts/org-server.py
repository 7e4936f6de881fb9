#!/usr/bin/env python3
"""A demo organisation server for beeldzorgd (HTTPS, bearer token), for the demo and tests.

  POST .../tablets/<id>/health     a health report (docs/health.schema.json); validated with
                                   python3-jsonschema when installed (invalid -> 400)
  POST .../calls, .../callback-requests   the upload outbox (answered 201, kept in a log)
  GET  .../tablets/<id>/config     <data>/config/<id>.json if present, else 404
  GET  /                           the fleet as an HTML page: each tablet's newest state,
                                   tablets with faults first (no token needed; demo only)
  GET  /fleet.json                 the same as JSON

Every health report received is appended to <data>/health.jsonl as
{"tablet", "receivedAt", "valid", "error", "document"}. It prints "PORT <n>" once it listens.

  scripts/org-server.py --data DIR --cert server.pem --key server.key --token-file token [--port 8443]
"""
import argparse, html, http.server, json, os, re, ssl, threading, time

lock = threading.Lock()
TABLET = re.compile(r"/tablets/([^/]+)/")


def load_validator(path):
    try:
        import jsonschema
    except ImportError:
        return None
    with open(path) as f:
        schema = json.load(f)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


class Fleet:
    """The newest report per tablet (by generatedAt: queued reports arrive newest first)."""

    def __init__(self, data):
        self.data = data
        self.tablets = {}
        path = os.path.join(data, "health.jsonl")
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    entry = json.loads(line)
                    if entry["valid"]:
                        self.note(entry["tablet"], entry["document"], entry["receivedAt"])

    def note(self, tablet, document, received):
        current = self.tablets.get(tablet)
        if current is None or document["generatedAt"] >= current["document"]["generatedAt"]:
            self.tablets[tablet] = {"document": document, "receivedAt": received}

    def ordered(self):
        return sorted(self.tablets.items(), key=lambda item: (not item[1]["document"]["faults"], item[0]))


def page(fleet):
    rows = []
    for tablet, entry in fleet.ordered():
        d = entry["document"]
        faults = "<br>".join(html.escape(f["detail"]) for f in d["faults"]) or "none"
        devices = ", ".join("%s: %s" % (x["name"], x["state"]) for x in d["devices"])
        registration = ", ".join("%s %s" % (r["proxy"], r["state"]) for r in d["registration"]) or "no edge proxies"
        last = d.get("lastCall")
        last_text = "%s %s %s" % (last["direction"], last["outcome"], last["startedAt"]) if last else "-"
        rows.append(
            "<tr class='%s'><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s %s</td><td>%s</td></tr>" % (
                "fault" if d["faults"] else "ok", html.escape(tablet), faults, html.escape(d["call"]["phase"]),
                html.escape(registration), html.escape(devices), html.escape(last_text),
                html.escape(d["software"]["version"]), html.escape(d["software"]["imageVersion"] or ""),
                html.escape(d["generatedAt"])))
    return ("<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=10><title>Beeldzorg fleet</title>"
            "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px}"
            "tr.fault{background:#fdd}tr.ok{background:#dfd}</style>"
            "<h1>Beeldzorg fleet: %d tablets, %d with faults</h1><table><tr><th>tablet</th><th>faults</th>"
            "<th>call</th><th>registration</th><th>devices</th><th>last call</th><th>software</th><th>report</th></tr>%s</table>"
            % (len(fleet.tablets), sum(1 for _, e in fleet.tablets.items() if e["document"]["faults"]), "".join(rows)))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="directory for received reports and served config documents")
    parser.add_argument("--cert", required=True, help="server certificate (PEM), signed by the CA the tablets pin")
    parser.add_argument("--key", required=True, help="its private key (PEM)")
    parser.add_argument("--token-file", required=True, help="file with the bearer token the tablets send")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 lets the system choose (printed)")
    parser.add_argument("--schema", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "health.schema.json"))
    args = parser.parse_args()

    os.makedirs(args.data, exist_ok=True)
    with open(args.token_file) as f:
        token = f.readline().strip()
    validator = load_validator(args.schema)
    fleet = Fleet(args.data)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def send(self, status, body=b"", content_type="application/json"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def authorised(self):
            return self.headers.get("Authorization") == "Bearer " + token

        def do_GET(self):
            if self.path == "/":
                with lock:
                    return self.send(200, page(fleet).encode(), "text/html; charset=utf-8")
            if self.path == "/fleet.json":
                with lock:
                    return self.send(200, json.dumps(dict(fleet.ordered())).encode())
            if not self.authorised():
                return self.send(401, b"{}")
            match = TABLET.search(self.path)
            if match and self.path.endswith("/config"):
                path = os.path.join(args.data, "config", os.path.basename(match.group(1)) + ".json")
                if os.path.exists(path):
                    with open(path, "rb") as f:
                        return self.send(200, f.read())
            self.send(404, b"{}")

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if not self.authorised():
                return self.send(401, b"{}")
            match = TABLET.search(self.path)
            tablet = match.group(1) if match else "-"
            if self.path.endswith("/health"):
                try:
                    document = json.loads(body)
                    error = None
                    if validator is not None:
                        problems = sorted(validator.iter_errors(document), key=str)
                        error = "; ".join("%s: %s" % ("/".join(map(str, p.absolute_path)), p.message) for p in problems) or None
                except ValueError as e:
                    document, error = None, "not JSON: %s" % e
                received = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                with lock:
                    with open(os.path.join(args.data, "health.jsonl"), "a") as f:
                        f.write(json.dumps({"tablet": tablet, "receivedAt": received, "valid": error is None,
                                            "error": error, "document": document}) + "\n")
                    if error is None:
                        fleet.note(tablet, document, received)
                return self.send(400 if error else 201, json.dumps({"error": error} if error else {}).encode())
            with lock, open(os.path.join(args.data, "uploads.jsonl"), "a") as f:
                f.write(json.dumps({"tablet": tablet, "path": self.path, "key": self.headers.get("Idempotency-Key")}) + "\n")
            self.send(201, b"{}")

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address):
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server = Server((args.host, args.port), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print("PORT", server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
