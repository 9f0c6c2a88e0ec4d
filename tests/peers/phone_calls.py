#!/usr/bin/env python3
"""Two real phones through Whitewater's S-CSCF: baresip (driven through ctrl_tcp) and PJSIP's
pjsua2 each register with a password, then each calls the other; every call is answered
and hung up cleanly. Prints one line per step and "PASS" at the end; exits non-zero on the
first failure.

Usage: phone_calls.py SCSCF_HOST:PORT DOMAIN BARESIP_USER BARESIP_CTRL_PORT PJ_USER PJ_PORT PASSWORD
"""
import json
import os
import re
import socket
import sys
import time

import pjsua2 as pj

scscf, domain, b_user, b_ctrl, pj_user, pj_port, password = sys.argv[1:8]
B_AOR = f"sip:{b_user}@{domain}"
PJ_AOR = f"sip:{pj_user}@{domain}"


def fail(why):
    print(f"FAIL {why}", flush=True)
    sys.exit(1)


class Baresip:
    """ctrl_tcp: JSON commands in netstrings; replies and events come back the same way."""

    def __init__(self, port):
        deadline = time.time() + 10
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", int(port)), timeout=1)
                break
            except OSError:
                if time.time() > deadline:
                    fail("baresip's ctrl_tcp never answered")
                time.sleep(0.1)
        self.sock.setblocking(False)
        self.buf = b""
        self.events = []

    def send(self, command, params=""):
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self.sock.sendall(str(len(body)).encode() + b":" + body + b",")

    def poll(self):
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.buf += chunk
        except BlockingIOError:
            pass
        while b":" in self.buf:
            length, rest = self.buf.split(b":", 1)
            n = int(length)
            if len(rest) < n + 1:
                break
            message = json.loads(rest[:n])
            self.buf = rest[n + 1:]
            self.events.append(message)

    def saw(self, kind, since=0):
        return any(e.get("type") == kind for e in self.events[since:])

    def reply_text(self, token, since=0):
        for e in self.events[since:]:
            if e.get("response") and e.get("token") == token:
                return e.get("data", "")
        return None


ep = pj.Endpoint()
ep.libCreate()
cfg = pj.EpConfig()
cfg.uaConfig.threadCnt = 0
cfg.uaConfig.mainThreadOnly = True
cfg.logConfig.level = 1
cfg.logConfig.consoleLevel = 1
ep.libInit(cfg)
ep.audDevManager().setNullDev()
tc = pj.TransportConfig()
tc.port = int(pj_port)
tc.boundAddress = "127.0.0.1"
tc.publicAddress = "127.0.0.1"
ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
ep.libStart()

state = {"reg": None, "incoming": []}
calls = []


class Call(pj.Call):
    def onCallState(self, prm):
        info = self.getInfo()
        print(f"pjsua2 call {info.stateText} last={info.lastStatusCode}", flush=True)


class Account(pj.Account):
    def onRegState(self, prm):
        state["reg"] = prm.code
        print(f"pjsua2 registration {prm.code} {prm.reason}", flush=True)

    def onIncomingCall(self, prm):
        call = Call(self, prm.callId)
        calls.append(call)
        answer = pj.CallOpParam()
        answer.statusCode = 200
        call.answer(answer)
        state["incoming"].append(call)


baresip = Baresip(b_ctrl)


def pump(seconds, until=None):
    end = time.time() + seconds
    while time.time() < end:
        ep.libHandleEvents(20)
        baresip.poll()
        if until and until():
            return True
    return until() if until else True


def call_state(call):
    try:
        return call.getInfo().state
    except pj.Error:
        return pj.PJSIP_INV_STATE_DISCONNECTED


# 1. Both register with their passwords.
def baresip_registered():
    mark = len(baresip.events)
    baresip.send("reginfo")
    pump(0.5)
    text = re.sub(r"\x1b\[[0-9;]*m", "", baresip.reply_text("reginfo", mark) or "")
    return any(B_AOR in line and " OK " in f"{line} " for line in text.splitlines())


deadline = time.time() + 15
while not baresip_registered():
    if time.time() > deadline:
        fail(f"baresip never registered as {B_AOR}")
print(f"baresip registered as {B_AOR}", flush=True)

ac = pj.AccountConfig()
ac.idUri = PJ_AOR
ac.regConfig.registrarUri = f"sip:{domain}"
ac.regConfig.timeoutSec = 300
ac.sipConfig.proxies.append(f"sip:{scscf};lr")
ac.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", f"{pj_user}@{domain}", 0, password))
ac.natConfig.sdpNatRewriteUse = False
account = Account()
account.create(ac)
if not pump(15, lambda: state["reg"] is not None):
    fail("pjsua2 got no answer to its REGISTER")
if state["reg"] != 200:
    fail(f"pjsua2 registration answered {state['reg']}")

# 2. pjsua2 calls baresip, which answers by itself (answermode=auto); pjsua2 hangs up.
mark = len(baresip.events)
out = Call(account)
calls.append(out)
out.makeCall(B_AOR, pj.CallOpParam(True))
if not pump(15, lambda: call_state(out) == pj.PJSIP_INV_STATE_CONFIRMED):
    fail("pjsua2's call to baresip was not answered")
if not pump(5, lambda: baresip.saw("CALL_ESTABLISHED", mark)):
    fail("baresip did not report its answered call")
pump(1)
out.hangup(pj.CallOpParam(True))
if not pump(10, lambda: baresip.saw("CALL_CLOSED", mark)):
    fail("baresip did not see the hang-up")
if not pump(5, lambda: call_state(out) == pj.PJSIP_INV_STATE_DISCONNECTED):
    fail("pjsua2's call did not end")
print("call pjsua2 -> baresip answered and hung up", flush=True)

# 3. baresip calls pjsua2, which answers 200; baresip hangs up.
mark = len(baresip.events)
baresip.send("dial", PJ_AOR)
if not pump(15, lambda: baresip.saw("CALL_ESTABLISHED", mark)):
    fail("baresip's call to pjsua2 was not answered")
incoming = state["incoming"][-1] if state["incoming"] else None
if incoming is None or call_state(incoming) != pj.PJSIP_INV_STATE_CONFIRMED:
    fail("pjsua2 did not see its answered call")
pump(1)
baresip.send("hangup")
if not pump(10, lambda: call_state(incoming) == pj.PJSIP_INV_STATE_DISCONNECTED):
    fail("pjsua2 did not see baresip hang up")
if not pump(5, lambda: baresip.saw("CALL_CLOSED", mark)):
    fail("baresip's call did not end")
print("call baresip -> pjsua2 answered and hung up", flush=True)

# 4. pjsua2 unregisters cleanly.
state["reg"] = None
account.setRegistration(False)
if not pump(10, lambda: state["reg"] is not None):
    fail("no answer to pjsua2's unregistration")
if state["reg"] != 200:
    fail(f"pjsua2's unregistration answered {state['reg']}")
print("PASS", flush=True)
# pjsua2's Python objects assert if collected after the library is gone: leave at once.
os._exit(0)
