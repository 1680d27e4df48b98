"""``haven device`` against a running server's phones, on both engines: listing, a remote wipe
the phone carries out, cancelling one, forgetting a device."""

from __future__ import annotations

from tests.gateways.activesync.client import EasClient, find, started

FOLDER_SYNC = '<FolderSync xmlns="FolderHierarchy"><SyncKey>%s</SyncKey></FolderSync>'


def test_list_wipe_and_delete(eas):
    user, _password, phone, _answer, key = started(eas, "lost", "ApplLOST01")
    listing = eas.cli("device", "list", user)
    assert listing.returncode == 0
    [row] = [line.split("\t") for line in listing.stdout.decode().splitlines()]
    assert row[:3] == [user, "ApplLOST01", "iPhone"] and row[3:5] == ["iPhone15,2", "iOS 17.5"]
    assert row[5] == "16.1" and row[6] == "provisioned" and row[7] == "none"
    assert any(line.startswith(user + "\tApplLOST01") for line in
               eas.cli("device", "list").stdout.decode().splitlines())  # every account's devices
    # a wipe asked, then cancelled: the phone goes on
    assert eas.cli("device", "wipe", user, "ApplLOST01").returncode == 0
    assert eas.cli("device", "wipe", user, "ApplLOST01", "--cancel").returncode == 0
    assert find(phone.post("FolderSync", FOLDER_SYNC % key)[1], "FolderHierarchy:Status") == "1"
    # the phone is lost: wiped at its next request
    assert eas.cli("device", "wipe", user, "ApplLOST01").returncode == 0
    assert find(phone.post("FolderSync", FOLDER_SYNC % "0")[1], "FolderHierarchy:Status") == "140"
    status, answer = phone.post("Provision", '<Provision xmlns="Provision"><Policies><Policy><PolicyType>'
                                             'MS-EAS-Provisioning-WBXML</PolicyType></Policy></Policies></Provision>')
    assert answer.find("{Provision}RemoteWipe") is not None
    phone.post("Provision", '<Provision xmlns="Provision"><RemoteWipe><Status>1</Status></RemoteWipe></Provision>')
    [row] = [line.split("\t") for line in eas.cli("device", "list", user).stdout.decode().splitlines()]
    assert row[7] == "done"
    # forgotten: its state is gone with it
    assert eas.cli("device", "remove", user, "ApplLOST01").returncode == 0
    assert eas.cli("device", "list", user).stdout == b""
    r = eas.cli("device", "wipe", user, "NOSUCHDEVICE")
    assert r.returncode == 65 and b"has no device NOSUCHDEVICE" in r.stderr
    r = eas.cli("device", "delete", user, "NOSUCHDEVICE")  # the older name of remove
    assert r.returncode == 65 and b"has no device NOSUCHDEVICE" in r.stderr


def test_account_only_wipe(eas):
    user, password = eas.new_user("accountwipe")
    phone = EasClient(eas, user, password, device_id="ApplACCT01", version="16.1")
    phone.provision()
    older = EasClient(eas, user, password, device_id="ApplOLD01", version="14.1")
    older.provision()
    r = eas.cli("device", "wipe", user, "ApplOLD01", "--account-only")
    assert r.returncode == 65 and b"needs 16.1" in r.stderr  # never a whole wipe instead
    assert eas.cli("device", "wipe", user, "ApplACCT01", "--account-only").returncode == 0
    rows = {line.split("\t")[1]: line.split("\t") for line in eas.cli("device", "list", user).stdout.decode().splitlines()}
    assert rows["ApplACCT01"][7] == "requested (account only)" and rows["ApplOLD01"][7] == "none"
    status, answer = phone.post("Provision", '<Provision xmlns="Provision"><Policies><Policy><PolicyType>'
                                             'MS-EAS-Provisioning-WBXML</PolicyType></Policy></Policies></Provision>')
    assert answer.find("{Provision}AccountOnlyRemoteWipe") is not None and answer.find("{Provision}RemoteWipe") is None
    phone.post("Provision", '<Provision xmlns="Provision"><AccountOnlyRemoteWipe><Status>1</Status>'
                            '</AccountOnlyRemoteWipe></Provision>')
    rows = {line.split("\t")[1]: line.split("\t") for line in eas.cli("device", "list", user).stdout.decode().splitlines()}
    assert rows["ApplACCT01"][7] == "done (account only)"
