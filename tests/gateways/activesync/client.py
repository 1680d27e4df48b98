"""A small ActiveSync client for tests: real HTTP to `haven serve`, XML trees in and out."""

from __future__ import annotations

import base64
import http.client
import xml.etree.ElementTree as ET
from typing import Optional

from gateways.activesync.wbxml import decode, encode

PATH = "/Microsoft-Server-ActiveSync"


def X(xml: str) -> ET.Element:
    """An element from XML text whose namespaces are code page names (``<Sync xmlns="AirSync">``)."""
    return ET.fromstring(xml)


def find(el, path: str) -> Optional[str]:
    """The text at ``path`` of page:name steps (``"FolderHierarchy:Status"``), or None."""
    for step in path.split("/"):
        page, _, name = step.partition(":")
        el = el.find("{%s}%s" % (page, name)) if el is not None else None
    if el is None:
        return None
    return el.text.decode() if isinstance(el.text, bytes) else el.text


def findall(el, path: str) -> list:
    *head, last = path.split("/")
    for step in head:
        page, _, name = step.partition(":")
        el = el.find("{%s}%s" % (page, name)) if el is not None else None
    if el is None:
        return []
    page, _, name = last.partition(":")
    return el.findall("{%s}%s" % (page, name))


class EasClient:
    def __init__(self, server, user: str, password: str, device_id: str = "ApplDNQTEST01", device_type: str = "iPhone",
                 version: str = "16.1"):
        self.server, self.user, self.password = server, user, password
        self.device_id, self.device_type, self.version = device_id, device_type, version
        self.policy_key: Optional[str] = None

    def raw(self, method: str, query: str = "", body: bytes = b"", headers=None):
        conn = http.client.HTTPConnection(*self.server.http, timeout=30)
        auth = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        hdrs = {"Authorization": "Basic " + auth, "MS-ASProtocolVersion": self.version,
                "User-Agent": "Apple-iPhone/1901.100", "Content-Type": "application/vnd.ms-sync.wbxml"}
        if self.policy_key is not None:
            hdrs["X-MS-PolicyKey"] = self.policy_key
        hdrs.update(headers or {})
        try:
            conn.request(method, PATH + ("?" + query if query else ""), body=body, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def query(self, cmd: str, **params) -> str:
        extra = "".join(f"&{k}={v}" for k, v in params.items())
        return f"Cmd={cmd}&User={self.user}&DeviceId={self.device_id}&DeviceType={self.device_type}{extra}"

    def post(self, cmd: str, doc=None, **params):
        """``(HTTP status, the decoded answer or None)``."""
        body = b"" if doc is None else encode(X(doc) if isinstance(doc, str) else doc)
        status, headers, data = self.raw("POST", self.query(cmd, **params), body)
        assert "ms-server-activesync" in headers and headers.get("content-length") == str(len(data))
        return status, (decode(data) if data and status == 200 else None)

    def provision(self) -> str:
        """The two-step Provision of an iPhone; keeps and returns the final policy key."""
        status, answer = self.post("Provision", """<Provision xmlns="Provision" xmlns:s="Settings">
            <s:DeviceInformation><s:Set><s:Model>iPhone15,2</s:Model><s:OS>iOS 17.5</s:OS>
            <s:UserAgent>Apple-iPhone/1901.100</s:UserAgent></s:Set></s:DeviceInformation>
            <Policies><Policy><PolicyType>MS-EAS-Provisioning-WBXML</PolicyType></Policy></Policies></Provision>""")
        assert status == 200 and find(answer, "Provision:Status") == "1"
        temp = find(answer, "Provision:Policies/Provision:Policy/Provision:PolicyKey")
        status, answer = self.post("Provision", f"""<Provision xmlns="Provision"><Policies><Policy>
            <PolicyType>MS-EAS-Provisioning-WBXML</PolicyType><PolicyKey>{temp}</PolicyKey><Status>1</Status>
            </Policy></Policies></Provision>""")
        assert status == 200 and find(answer, "Provision:Policies/Provision:Policy/Provision:Status") == "1"
        self.policy_key = find(answer, "Provision:Policies/Provision:Policy/Provision:PolicyKey")
        assert self.policy_key and self.policy_key != temp
        return self.policy_key


def started(server, name: str, device_id: str, **kw):
    """A new account's phone, provisioned, after its first FolderSync:
    ``(address, password, EasClient, the FolderSync answer, its SyncKey)``."""
    user, password = server.new_user(name)
    phone = EasClient(server, user, password, device_id=device_id, **kw)
    phone.provision()
    _status, answer = phone.post("FolderSync", '<FolderSync xmlns="FolderHierarchy"><SyncKey>0</SyncKey></FolderSync>')
    return user, password, phone, answer, find(answer, "FolderHierarchy:SyncKey")
