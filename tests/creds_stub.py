# Credential endpoints on 127.0.0.1 for the session tests: IMDSv2 (token,
# role list, role credentials), an ECS container endpoint and STS
# (AssumeRole, AssumeRoleWithWebIdentity). Every answer carries the keys
# given as KEY:SECRET, the session token "stub-session-token" and an
# expiration TTL seconds ahead. Prints its port, then one line
# "hit NAME" per request served.
#   creds_stub.py KEY:SECRET TTL
import datetime
import http.server
import sys
import urllib.parse

KEY, SECRET = sys.argv[1].split(":", 1)
TTL = int(sys.argv[2])
IMDS_TOKEN = "imds-token-0123"
ECS_AUTH = "ecs-auth-token"


def expiration():
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=TTL)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def creds_json():
    return ('{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"%s","SecretAccessKey":"%s",'
            '"Token":"stub-session-token","Expiration":"%s"}' % (KEY, SECRET, expiration()))


def sts_xml(action):
    return ('<%sResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><%sResult><Credentials>'
            "<AccessKeyId>%s</AccessKeyId><SecretAccessKey>%s</SecretAccessKey>"
            "<SessionToken>stub-session-token</SessionToken><Expiration>%s</Expiration>"
            "</Credentials></%sResult></%sResponse>" % (action, action, KEY, SECRET, expiration(), action, action))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body, name):
        data = body.encode()
        print("hit", name, flush=True)  # before the answer: the client's next step cannot overtake it
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            return self.answer(200, IMDS_TOKEN, "imds-token")
        self.answer(403, "", "bad-put")

    def do_GET(self):
        base = "/latest/meta-data/iam/security-credentials/"
        if self.path.startswith(base):
            if self.headers.get("X-aws-ec2-metadata-token") != IMDS_TOKEN:
                return self.answer(401, "", "imds-unauthorized")
            if self.path == base:
                return self.answer(200, "stub-role\n", "imds-role")
            if self.path == base + "stub-role":
                return self.answer(200, creds_json(), "imds-creds")
            return self.answer(404, "", "imds-unknown-role")
        if self.path == "/ecs/creds":
            if self.headers.get("Authorization") != ECS_AUTH:
                return self.answer(401, "", "ecs-unauthorized")
            return self.answer(200, creds_json(), "ecs-creds")
        self.answer(404, "", "not-found")

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(n).decode())
        action = form.get("Action", [""])[0]
        if action == "AssumeRole" and self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 "):
            return self.answer(200, sts_xml("AssumeRole"), "sts-assume-role")
        if action == "AssumeRoleWithWebIdentity" and form.get("WebIdentityToken") == ["web-identity-token"]:
            return self.answer(200, sts_xml("AssumeRoleWithWebIdentity"), "sts-web-identity")
        self.answer(400, "<ErrorResponse><Error><Code>InvalidAction</Code></Error></ErrorResponse>", "sts-bad")


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(srv.server_address[1], flush=True)
srv.serve_forever()
